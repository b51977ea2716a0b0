"""ResourceClaims, ResourceClaimTemplates and DeviceClasses of the cluster, list+watched.

A pod names its claim template by name, and the admission request carries only the pod:
the server must know the templates beforehand, not fetch them while the API server waits.
`ClaimCache` is a `dra.Source` (what the engine looks claims up in) and a server service:
one thread per kind lists the objects, then watches from the list's resourceVersion; every
`resync` (or when the watch breaks: 410 Gone, the API server restarting) it lists again and
swaps the whole map in. A lookup is a dict read that never waits for the API server.

Memory is bounded: only each object's name, namespace and `spec` are kept, and at most
`maxObjects` per kind (the rest are left out and logged). Until the first list of a kind
succeeds, lookups of it find nothing, and until all three are listed `describe()` says the
cache has not synced, so the `dra.unresolved` failure mode decides.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from kubernetes import client, watch

from webhook import dra
from webhook.audit import kube

log = logging.getLogger("mlgate.claimcache")

JSON = dict[str, Any]
PLURALS = {dra.CLAIM: "resourceclaims", dra.TEMPLATE: "resourceclaimtemplates",
           dra.DEVICE_CLASS: "deviceclasses"}
RETRY = 2.0  # seconds before listing again after an error


def _slim(kind: str, version: str, obj: JSON) -> tuple[tuple[str, str, str], JSON] | None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        return None
    namespace = "" if kind == dra.DEVICE_CLASS else str(meta.get("namespace") or "")
    key = (kind, namespace, str(meta["name"]))
    return key, {"apiVersion": f"{dra.GROUP}/{version}", "kind": kind,
                 "metadata": {"name": key[2], "namespace": namespace},
                 "spec": obj.get("spec")}


class ClaimCache:
    """A `dra.Source` fed by list+watch of the cluster; start() and stop() as a service."""

    def __init__(self, settings: dra.CacheSettings, api_client: Any | None = None) -> None:
        self.settings = settings
        self._client = api_client
        self._maps: dict[str, dict[tuple[str, str, str], JSON]] = {k: {} for k in PLURALS}
        self._synced: set[str] = set()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[watch.Watch] = []

    # -- dra.Source --------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        objects = self._maps.get(kind)
        if objects is None:
            return None
        return objects.get((kind, "" if kind == dra.DEVICE_CLASS else namespace, name))

    def describe(self) -> str:
        if self.synced:
            return "the cluster (mlgate's claim cache)"
        return "mlgate's claim cache, which has not synced with the API server yet"

    @property
    def synced(self) -> bool:
        return self._synced >= PLURALS.keys()

    def __len__(self) -> int:
        return sum(len(objects) for objects in self._maps.values())

    # -- service -------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is None:
            self._client = kube.api_client(self.settings.kubeconfig)
        for kind in PLURALS:
            thread = threading.Thread(target=self._run, args=(kind,), daemon=True,
                                      name=f"mlgate-claimcache-{PLURALS[kind]}")
            thread.start()
            self._threads.append(thread)

    async def stop(self) -> None:
        self._stopping.set()
        for stream in list(self._watches):
            stream.stop()  # type: ignore[no-untyped-call]
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=2.0)

    async def wait_synced(self, timeout: float) -> bool:
        """True once claims, templates and device classes are all listed (tests and
        readiness): a class listed late would count a pod's GPUs by the defaults alone."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.synced and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return self.synced

    # -- one kind ------------------------------------------------------------------
    def _run(self, kind: str) -> None:
        api = client.CustomObjectsApi(self._client)
        version, plural = self.settings.version, PLURALS[kind]
        while not self._stopping.is_set():
            try:
                listed: Any = api.list_cluster_custom_object(dra.GROUP, version, plural,
                                                             _request_timeout=30)
                objects: dict[tuple[str, str, str], JSON] = {}
                self._add_all(kind, version, listed.get("items") or [], objects)
                self._maps[kind] = objects
                self._synced.add(kind)
                self._watch(api, kind, version, plural,
                            str((listed.get("metadata") or {}).get("resourceVersion") or ""))
            except Exception as exc:  # the API server away, RBAC missing, 410 Gone, ...
                if self._stopping.is_set():
                    return
                log.warning("claim cache: listing or watching %s failed (%s); retrying in "
                            "%.0fs", plural, exc, RETRY)
                self._stopping.wait(RETRY)

    def _add_all(self, kind: str, version: str, items: list[Any],
                 objects: dict[tuple[str, str, str], JSON]) -> None:
        for item in items:
            if len(objects) >= self.settings.maxObjects:
                log.warning("claim cache: more than %d %s objects; the rest are left out "
                            "(raise dra.cache.maxObjects)", self.settings.maxObjects, kind)
                return
            slim = _slim(kind, version, item) if isinstance(item, dict) else None
            if slim is not None:
                objects[slim[0]] = slim[1]

    def _watch(self, api: Any, kind: str, version: str, plural: str,
               resource_version: str) -> None:
        """Apply events to the live map until the resync interval ends the watch."""
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        self._watches.append(stream)
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                    api.list_cluster_custom_object, dra.GROUP, version, plural,
                    resource_version=resource_version, allow_watch_bookmarks=True,
                    timeout_seconds=max(1, int(self.settings.resync))):
                if self._stopping.is_set():
                    return
                kind_of_event, obj = event.get("type"), event.get("object")
                if kind_of_event == "ERROR":
                    raise RuntimeError(f"watch error: {obj}")
                if not isinstance(obj, dict) or kind_of_event == "BOOKMARK":
                    continue
                slim = _slim(kind, version, obj)
                if slim is None:
                    continue
                objects = self._maps[kind]
                if kind_of_event == "DELETED":
                    objects.pop(slim[0], None)
                elif slim[0] in objects or len(objects) < self.settings.maxObjects:
                    objects[slim[0]] = slim[1]
        finally:
            self._watches.remove(stream)

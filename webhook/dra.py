"""Dynamic Resource Allocation as mlgate reads it: pod claims, device requests, classes.

A DRA pod asks for GPUs without naming `nvidia.com/gpu`: a container lists
`resources.claims`, the pod's `resourceClaims` name a ResourceClaim or a
ResourceClaimTemplate, and the claim's `spec.devices.requests[]` name a DeviceClass and a
count. This module reads those shapes (resource.k8s.io v1, v1beta2, v1beta1 and v1alpha3)
and finds the objects a pod names through a `Source`: the manifests given to
`mlgate check` (`Manifests`), or, in the server, whatever implements `Source` (a
list+watch cache of the cluster). `accelerators` turns what it finds into counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field

from webhook import schema, workloads

JSON = dict[str, Any]
GROUP = "resource.k8s.io"
CLAIM = "ResourceClaim"
TEMPLATE = "ResourceClaimTemplate"
DEVICE_CLASS = "DeviceClass"
KINDS = (CLAIM, TEMPLATE, DEVICE_CLASS)

# Device classes of the DRA drivers (globs) -> the accelerator resource they stand for, so
# the policies that know `nvidia.com/gpu` know a `gpu.nvidia.com` claim too.
DEFAULT_DEVICE_CLASSES: dict[str, str] = {
    "gpu.nvidia.com": "nvidia.com/gpu",
    "mig.nvidia.com": "nvidia.com/mig",
    "gpu.amd.com": "amd.com/gpu",
    "gpu.intel.com": "gpu.intel.com/i915",
}


class CacheSettings(schema.Model):
    """`dra.cache`: the server's list+watch cache of claims, templates and device classes."""

    enabled: bool = Field(False, description="Read claims from the cluster (needs the chart's "
                                             "RBAC: list/watch of resource.k8s.io claims).")
    kubeconfig: str | None = Field(None, description="Kubeconfig file; unset: in-cluster "
                                                     "service account, else ~/.kube/config.")
    version: str = Field("v1", description="resource.k8s.io version read (v1 since 1.34).")
    resync: schema.Duration = Field(300.0, description="Relist this often (a watch ends "
                                                       "and the whole kind is read again).")
    maxObjects: int = Field(100_000, gt=0, description="Objects kept per kind, at most.")


class Settings(schema.Model):
    """`dra:` in mlgate.yaml: how claims become accelerators, and what a missing one does."""

    deviceClasses: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_DEVICE_CLASSES),
        description="Device class name (glob, first match) -> accelerator resource name. "
                    "A class not listed counts as the `extendedResourceName` of its "
                    "DeviceClass when mlgate sees the class, else not as an accelerator.")
    countAll: int | None = Field(
        None, ge=1, description="What `allocationMode: All` (every matching device on the "
                                "node) counts as; unset: unbounded, denied where a cap applies.")
    unresolved: Literal["deny", "warn"] = Field(
        "warn", description="A pod claim whose ResourceClaim or ResourceClaimTemplate mlgate "
                            "cannot find: deny the pod, or admit it with a warning (its "
                            "devices are then not counted).")
    cache: CacheSettings = Field(default_factory=CacheSettings)


class Source(Protocol):
    """Where claims, templates and device classes are looked up (namespace '' for classes)."""

    def get(self, kind: str, namespace: str, name: str) -> JSON | None: ...

    def describe(self) -> str:
        """Where objects come from, for messages (`the manifests given`, `the cluster`)."""
        ...


class Manifests:
    """A `Source` over the objects `mlgate check` was given (multi-document files)."""

    def __init__(self, objects: Iterable[Any], namespace: str = "default") -> None:
        self._objects: dict[tuple[str, str, str], JSON] = {}
        for obj in objects:
            if not isinstance(obj, dict) or not str(obj.get("apiVersion", "")).startswith(
                    GROUP + "/"):
                continue
            kind, meta = obj.get("kind"), obj.get("metadata")
            if kind not in KINDS or not isinstance(meta, dict) or not meta.get("name"):
                continue
            ns = "" if kind == DEVICE_CLASS else str(meta.get("namespace") or namespace)
            self._objects[(str(kind), ns, str(meta["name"]))] = obj

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        return self._objects.get((kind, "" if kind == DEVICE_CLASS else namespace, name))

    def describe(self) -> str:
        return "the manifests given"


class Nothing:
    """A `Source` that knows no object (a server without a claim cache)."""

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        return None

    def describe(self) -> str:
        return "mlgate (no claim cache is configured)"


@dataclass(frozen=True)
class Choice:
    """One way a request may be satisfied: a device class and how many devices."""

    name: str  # the request's name, or `request/sub-request` for firstAvailable
    device_class: str
    count: int | None  # None: allocationMode All (every matching device on the node)
    admin_access: bool = False
    # JSON pointer of the dict holding these fields, from the claim spec (`spec` of a
    # claim, `spec.spec` of a template): `/devices/requests/0/exactly` (v1, v1beta2),
    # `/devices/requests/0` (v1beta1, v1alpha3), `/devices/requests/0/firstAvailable/1`
    pointer: str = ""


@dataclass(frozen=True)
class Request:
    """One entry of `spec.devices.requests`: exactly one choice, or firstAvailable ones."""

    name: str
    index: int
    choices: tuple[Choice, ...]


def _count(spec: JSON) -> int | None:
    if spec.get("allocationMode") == "All":
        return None
    count = spec.get("count", 1)
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1


def _choice(name: str, spec: JSON, pointer: str) -> Choice:
    return Choice(name=name, device_class=str(spec.get("deviceClassName") or ""),
                  count=_count(spec), admin_access=spec.get("adminAccess") is True,
                  pointer=pointer)


def requests(claim_spec: Any) -> list[Request]:
    """The device requests of a ResourceClaim's `spec` in any served shape.

    v1 and v1beta2 nest one device under `exactly`; v1beta1 and v1alpha3 put its fields on
    the request itself; every version may list `firstAvailable` alternatives instead.
    """
    devices = claim_spec.get("devices") if isinstance(claim_spec, dict) else None
    entries = devices.get("requests") if isinstance(devices, dict) else None
    found = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name") or "")
        at = workloads.pointer("devices", "requests", index)
        alternatives = entry.get("firstAvailable")
        if isinstance(alternatives, list) and alternatives:
            choices = tuple(_choice(f"{name}/{sub.get('name') or ''}", sub,
                                    f"{at}/firstAvailable/{position}")
                            for position, sub in enumerate(alternatives)
                            if isinstance(sub, dict))
        else:
            exactly = entry.get("exactly")
            choices = (_choice(name, exactly, f"{at}/exactly") if isinstance(exactly, dict)
                       else _choice(name, entry, at),)
        found.append(Request(name=name, index=index, choices=choices))
    return found


def claim_spec(obj: JSON) -> Any:
    """The ResourceClaim spec of a claim (`spec`) or of a template (`spec.spec`)."""
    spec = obj.get("spec")
    if obj.get("kind") == TEMPLATE:
        return spec.get("spec") if isinstance(spec, dict) else None
    return spec


def claim_spec_pointer(obj: JSON) -> str:
    """The JSON pointer of `claim_spec(obj)` in the object: `/spec` or `/spec/spec`."""
    return "/spec/spec" if obj.get("kind") == TEMPLATE else "/spec"


@dataclass(frozen=True)
class PodClaim:
    """One entry of a pod's `resourceClaims`: the name containers use and what it names."""

    name: str
    kind: str  # ResourceClaim or ResourceClaimTemplate
    target: str  # the claim's or the template's name
    pointer: str  # of the entry in the object

    @property
    def describe(self) -> str:
        word = "claim" if self.kind == CLAIM else "claim template"
        return f"pod claim {self.name!r} ({word} {self.target})"


def pod_claims(pod: workloads.PodSpecView) -> list[PodClaim]:
    """The pod's `resourceClaims` (and the `source` wrapper of Kubernetes <= 1.30)."""
    found = []
    for index, entry in enumerate(pod.spec.get("resourceClaims") or []):
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        wrapped = entry.get("source")
        source: JSON = wrapped if isinstance(wrapped, dict) else entry
        for field, kind in (("resourceClaimName", CLAIM), ("resourceClaimTemplateName", TEMPLATE)):
            target = source.get(field)
            if isinstance(target, str) and target:
                found.append(PodClaim(str(entry["name"]), kind, target,
                                      pod.pointer + workloads.pointer("resourceClaims", index)))
                break
    return found


def container_claims(container: workloads.ContainerView) -> list[tuple[str, str]]:
    """(claim name, request name or '') of a container's `resources.claims`."""
    resources = container.data.get("resources")
    claims = resources.get("claims") if isinstance(resources, dict) else None
    return [(str(c["name"]), str(c.get("request") or "")) for c in claims or []
            if isinstance(c, dict) and c.get("name")] if isinstance(claims, list) else []


class Resolver:
    """Settings and a `Source` together: what a pod's claims ask for, by device class."""

    def __init__(self, settings: Settings, source: Source) -> None:
        self.settings = settings
        self.source = source

    def resource_of(self, device_class: str) -> str | None:
        """The accelerator resource a device class stands for, or None (not an accelerator)."""
        for pattern, resource in self.settings.deviceClasses.items():
            if workloads.glob_matcher((pattern,))(device_class):
                return resource
        found = self.source.get(DEVICE_CLASS, "", device_class) if device_class else None
        spec = found.get("spec") if found is not None else None
        name = spec.get("extendedResourceName") if isinstance(spec, dict) else None
        return name if isinstance(name, str) and name else None

    def lookup(self, namespace: str, claim: PodClaim) -> JSON | None:
        return self.source.get(claim.kind, namespace, claim.target)

"""The audit side while the server runs: the journal writer, the token checker, the scan,
its PolicyReports and the Kubernetes Events writer.

`Audit` is a service of the app (`start()` opens and migrates the journal, builds the token
checker, starts the Events writer and the cluster scan; `stop()` stops them, drains the
journal and closes `queries`, the pool the audit endpoints read the journal in;
`reloaded()` rebuilds the token checker when a reload changes who may read) and gives
two decision observers (`observe()` queues the decision's record, `events.observe`
queues an Event for a denial; neither waits). The endpoints that read it are in `routes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from webhook import decisions, errors
from webhook.audit import access, events, journal, kube, policyreports, queries, scan
from webhook.audit import store as store_module
from webhook.runtime import Runtime

log = logging.getLogger("mlgate.audit")


class Audit:
    """The journal, the authority for the audit endpoints and the scanner, once started.

    Without `data_dir` (an app embedded in tests or another program) the journal is off
    unless `journal.url` names a database; `mlgate serve` always passes its --data-dir.
    """

    def __init__(self, runtime: Runtime, data_dir: str | Path | None = None) -> None:
        self.runtime = runtime
        self.data_dir = data_dir
        self.journal: journal.Journal | None = None
        self.authority: access.Authority | None = None
        self.scanner: scan.Scanner | None = None
        self._scan_task: asyncio.Task[None] | None = None
        self._access_key: tuple[object, ...] = ()
        self.events = events.Recorder(lambda: runtime.engine.config.audit.events,
                                      self._cluster_api)
        audit_cfg = runtime.engine.config.audit  # read at start: resizing needs a restart
        self.queries = queries.Queries(audit_cfg.maxQueries, audit_cfg.queryTimeout)

    def _cluster_api(self) -> kube.Api | None:
        """A client for writing Events and PolicyReports: in a pod, or audit.scan.kubeconfig
        (never the user's default kubeconfig, which may be any cluster)."""
        scan_cfg = self.runtime.engine.config.audit.scan
        if not (scan_cfg.kubeconfig or kube.in_cluster()):
            return None
        return kube.Api(kube.api_client(scan_cfg.kubeconfig), scan_cfg.timeout)

    def observe(self, decision: decisions.Decision) -> None:
        """A decision observer: queue the decision for the journal."""
        if self.journal is not None:
            self.journal.record(decision.record())

    @property
    def store(self) -> store_module.Store | None:
        return self.journal.store if self.journal is not None else None

    def reloaded(self, ok: bool, _error: str) -> None:
        """A `runtime.listeners` callable: a new authority when the access settings changed,
        so that a reader or token file removed from the config is refused from now on."""
        if not ok or self.authority is None:
            return
        cfg = self.runtime.engine.config.audit
        key = access.settings_key(cfg)
        if key == self._access_key:
            return
        self._access_key = key
        try:
            self.authority = access.authority(cfg)
        except errors.ConfigError as exc:
            log.error("audit access: %s; the audit endpoints refuse every request", exc)
            self.authority = access.Refusing(str(exc))
            return
        log.info("audit access: tokens and readers re-read from the new configuration")

    async def start(self) -> None:
        cfg = self.runtime.engine.config
        self.authority = access.authority(cfg.audit)
        self._access_key = access.settings_key(cfg.audit)
        self.runtime.listeners.append(self.reloaded)
        self.events.start()
        if self.data_dir is None and not cfg.journal.url:
            log.info("journal off: no data directory and no journal.url (embedded app)")
            return
        self.journal = await asyncio.to_thread(
            journal.open_journal, cfg.journal, str(self.data_dir) if self.data_dir else None)
        self.journal.start()
        if cfg.audit.scan.enabled:
            scanner = scan.Scanner(kube.api_client(cfg.audit.scan.kubeconfig),
                                   lambda: self.runtime.engine, self.journal.store,
                                   cfg.audit.scan)
            scanner.on_failing.append(self.events.found)
            scanner.after.append(policyreports.after_scan(
                self.journal.store, lambda: self.runtime.engine.config.audit.policyReports,
                lambda: kube.Api(scanner.api_client, cfg.audit.scan.timeout)))
            self.scanner = scanner
            self._scan_task = asyncio.create_task(scanner.loop(), name="mlgate-scan")

    async def stop(self) -> None:
        if self.reloaded in self.runtime.listeners:
            self.runtime.listeners.remove(self.reloaded)
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scan_task
        await self.events.close()
        self.queries.close()
        if self.journal is not None:
            await self.journal.close()

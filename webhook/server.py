"""The composition root, and running the app under uvicorn over HTTPS with certificate reload.

`application()` is where the server is wired together: the admission app of `webhook.app`
with its decision observers (metrics, the decision log, the journal), its services
(admission's own threads for blocking policies, the audit journal and scan, plus what the
caller adds, such as certificate renewal) and the audit router; `build()` puts it under
uvicorn with the connection limits of `webhook.connections`. Start reading here to see
what runs in `mlgate serve`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from webhook import app as app_module
from webhook import certs, claimcache, connections, health, invocation, logs, metrics, tls
from webhook import config as config_module
from webhook.audit import routes as audit_routes
from webhook.audit import service as audit_service
from webhook.runtime import Runtime

log = logging.getLogger("mlgate.server")


def resolve_tls_files(cert: str | None, key: str | None, certs_dir: str | Path = "certs",
                      ) -> tuple[Path, Path]:
    """The given pair, or development certificates in `certs/` (made when absent)."""
    if bool(cert) != bool(key):
        raise SystemExit("mlgate serve: give both --tls-cert and --tls-key, or neither")
    if cert and key:
        return Path(cert), Path(key)
    cert_path, key_path = certs.ensure(certs_dir)
    log.info("using development certificates in %s (CA: %s)", certs_dir,
             Path(certs_dir) / certs.CA_FILE)
    return cert_path, key_path


def application(runtime: Runtime, tls_context: tls.ReloadingContext | None = None,
                data_dir: str | Path | None = None,
                services: Sequence[app_module.Service] = ()) -> FastAPI:
    """The whole server app: admission routes, audit endpoints, observers and services.

    Admission shares no thread pool with the audit side: blocking policies run in
    `invocation.PolicyThreads`, audit queries in the audit service's own bounded pool and
    the journal writer on a thread of its own (issue 12)."""
    audit = audit_service.Audit(runtime, data_dir)
    # read at start: resizing needs a restart
    policy_threads = invocation.PolicyThreads(runtime.engine.config.policyThreads)
    runtime.use_executor(policy_threads.executor)
    extra: list[app_module.Service] = [policy_threads]
    cache_settings = runtime.engine.config.dra.cache
    if cache_settings.enabled:  # read at start: turning it on or off needs a restart
        cache = claimcache.ClaimCache(cache_settings)
        runtime.use_claims(cache)
        extra.append(cache)
    runtime.listeners.append(metrics.reload_result)
    if tls_context is not None:
        cert_file = tls_context.cert_file
        metrics.CERT_EXPIRY.set_function(lambda: tls.certificate_expiry(cert_file))
    return app_module.create_app(
        runtime, tls_context=tls_context,
        observers=[metrics.observe_decision, logs.log_decision, audit.observe,
                   audit.events.observe],
        services=[*extra, audit, *services], routers=[audit_routes.router(audit)])


def build(runtime: Runtime, cert: Path, key: Path, host: str, port: int,
          client_ca: str | None = None, log_level: str = "info",
          data_dir: str | None = None,
          services: Sequence[app_module.Service] = (),
          health_port: int | None = None) -> uvicorn.Server:
    """uvicorn over HTTPS on host:port; `health_port`: probes and metrics there too."""
    context = tls.ReloadingContext(cert, key, client_ca)
    listener = health.Listener(host, health_port) if health_port else None
    app = application(runtime, context, data_dir,
                      [*services, listener] if listener is not None else services)
    if listener is not None:
        listener.app = app
    limits = connections.fit_file_descriptors(
        runtime.engine.config.connections if runtime.ready else config_module.ConnectionSettings())
    config = uvicorn.Config(
        app, host=host, port=port,
        log_level=log_level, access_log=False,
        # httptools with mlgate's header cap and per-phase deadlines; no WebSockets
        http=connections.protocol(limits), ws="none",
        timeout_keep_alive=math.ceil(limits.idleTimeout),
        lifespan="on", timeout_graceful_shutdown=10, proxy_headers=False, server_header=False,
        log_config=None,  # keep the process's logging (JSON lines, webhook.logs)
        # our context, so that certificate reloads reach every new handshake
        ssl_context_factory=lambda _config, _default: context.context)
    return uvicorn.Server(config)


def serve(server: uvicorn.Server, workers: int = 1) -> None:
    """Run in this process, or fork `workers` processes that share one listening socket."""
    if workers <= 1:
        server.run()
        return
    sock = server.config.bind_socket()
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own event loop, its own copy of the engine
            try:
                server.run(sockets=[sock])
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

"""Start the real `mlgate serve` over TLS on a loopback port, as a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from webhook import certs, server


@dataclass
class RunningServer:
    url: str
    port: int
    ca: Path
    cert: Path
    key: Path
    process: subprocess.Popen[bytes]
    log: Path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the server's CA, as the API server does."""
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=10, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_server(workdir: Path, *extra_args: str, config: Path | None = None,
                   python: str = sys.executable,
                   env: dict[str, str] | None = None, ready_timeout: float = 30.0,
                   ) -> Iterator[RunningServer]:
    """`mlgate serve` with certificates generated in `workdir`, ready when this yields."""
    cert_dir = workdir / "certs"
    certs.write(certs.generate("mlgate", "mlgate-system"), cert_dir)
    port = server.free_port()
    log = workdir / f"server-{port}.log"
    args = [python, "-m", "webhook.cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--tls-cert", str(cert_dir / certs.CERT_FILE),
            "--tls-key", str(cert_dir / certs.KEY_FILE), *extra_args]
    if config is not None:
        args += ["--config", str(config)]
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, cwd=workdir)
    running = RunningServer(f"https://127.0.0.1:{port}", port, cert_dir / certs.CA_FILE,
                            cert_dir / certs.CERT_FILE, cert_dir / certs.KEY_FILE, process, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlgate serve exited with {process.returncode}:\n"
                                   f"{running.output()}")
            try:
                with running.client() as client:
                    if client.get("/readyz").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlgate serve not ready in {ready_timeout}s:\n"
                                   f"{running.output()}")
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

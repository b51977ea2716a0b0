"""A proxy in front of the real kube-apiserver that misbehaves on purpose.

The real API server (tests/e2e/controlplane.py) answers everything else the scan and the
token checks ask; what it cannot be made to do on demand is fail at a chosen moment: a list
of one kind answering 500 while discovery still serves the kind, a `continue` token that
expires (410 Gone) in the middle of a list, a TokenReview that errors or does not answer.
The proxy forwards every request to the real one with its admin identity, except the ones
a test told it to fail. Clients talk plain HTTP to it on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.e2e.controlplane import ControlPlane

EXPIRED = ("The provided continue parameter is too old to display a consistent list result. "
           "You can start a new list without the continue parameter.")


@dataclass
class Faults:
    fail: dict[str, int] = field(default_factory=dict)  # path -> status answered instead
    expire_continue: set[str] = field(default_factory=set)  # paths: `continue` gets 410
    stall: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    failed: list[str] = field(default_factory=list)  # the paths answered with a fault


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": message, "reason": reason,
                       "code": code}).encode()


def _handler(plane: ControlPlane, faults: Faults) -> type[BaseHTTPRequestHandler]:
    context = ssl.create_default_context(cafile=str(plane.pki / "ca.crt"))
    context.load_cert_chain(str(plane.pki / "admin.crt"), str(plane.pki / "admin.key"))
    target = urlparse(plane.server)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _answer(self, code: int, data: bytes) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up on a stalled answer
                pass

        def _fault(self) -> tuple[int, bytes] | None:
            url = urlparse(self.path)
            if url.path in faults.fail:
                code = faults.fail[url.path]
                return code, _status(code, "InternalError", "etcdserver: request timed out")
            if url.path in faults.expire_continue and parse_qs(url.query).get("continue"):
                return 410, _status(410, "Expired", EXPIRED)
            return None

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            time.sleep(faults.stall.get(urlparse(self.path).path, 0))
            fault = self._fault()
            if fault is not None:
                faults.failed.append(urlparse(self.path).path)
                self._answer(*fault)
                return
            # http.client, not urllib: urllib would add a form Content-Type where the
            # client sent none (the kubernetes client sends none for JSON)
            headers = {name: self.headers[name] for name in ("Accept", "Content-Type")
                       if self.headers.get(name)}
            upstream = http.client.HTTPSConnection(target.hostname, target.port,
                                                   context=context, timeout=30)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                self._answer(response.status, response.read())
            except OSError as exc:  # the control plane stopped while a stall went on
                self._answer(502, _status(502, "BadGateway", str(exc)))
            finally:
                upstream.close()

        do_GET = do_POST = _handle

    return Handler


@contextmanager
def misbehaving(plane: ControlPlane, workdir: Path, faults: Faults) -> Iterator[Path]:
    """The kubeconfig of a proxy to `plane` that answers with `faults`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(plane, faults))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    kubeconfig = workdir / "misbehaving-kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
        "clusters": [{"name": "proxy", "cluster": {
            "server": f"http://127.0.0.1:{httpd.server_address[1]}"}}],
        "users": [{"name": "admin", "user": {}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "admin"}}]}))
    try:
        yield kubeconfig
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)

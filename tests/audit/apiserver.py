"""A stand-in for kube-apiserver (none can run on these machines), for the scan and access.

It serves what the real API server answers to the requests the `kubernetes` client makes:
discovery (`/api/v1`, `/apis`, `/apis/<group>/<version>`), lists of recorded objects with
`limit`/`continue` pagination (an opaque continue token; items of built-in kinds omit
`apiVersion`/`kind` as in real list responses), `TokenReview` and `SubjectAccessReview`,
and 401/404 `Status` objects. Modelled on the Kubernetes API concepts documentation
("Retrieving large results sets in chunks"). Binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

FIXTURES = Path(__file__).parent / "fixtures" / "apiserver"
SCAN_TOKEN = "scan-token"


@dataclass
class ApiState:
    discovery: dict[str, Any]
    lists: dict[str, dict[str, Any]]  # path -> recorded full list
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> userInfo
    allowed_users: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)


def load_state() -> ApiState:
    discovery = json.loads((FIXTURES / "discovery.json").read_text())
    lists = json.loads((FIXTURES / "lists.json").read_text())
    return ApiState(discovery=discovery, lists=lists)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    state: ApiState

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {SCAN_TOKEN}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return False
        return True

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.state.requests.append(("GET", url.path, query))
        if not self._authorized():
            return
        if url.path in self.state.discovery:
            self._send(200, self.state.discovery[url.path])
            return
        recorded = self.state.lists.get(url.path)
        if recorded is None:
            self._send(404, _status(404, "NotFound", "the server could not find the "
                                                     "requested resource"))
            return
        items = recorded["items"]
        start = 0
        if query.get("continue"):
            start = int(base64.b64decode(query["continue"][0]).decode().split(":")[1])
        limit = int(query["limit"][0]) if query.get("limit") else len(items)
        page = items[start:start + limit]
        meta: dict[str, Any] = {"resourceVersion": "4242"}
        if start + limit < len(items):
            meta["continue"] = base64.b64encode(f"4242:{start + limit}".encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        self._send(200, {"kind": recorded["kind"], "apiVersion": recorded["apiVersion"],
                         "metadata": meta, "items": page})

    def do_POST(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.state.requests.append(("POST", url.path, {}))
        if not self._authorized():
            return
        if url.path == "/apis/authentication.k8s.io/v1/tokenreviews":
            user = self.state.tokens.get(body.get("spec", {}).get("token", ""))
            status = {"authenticated": True, "user": user} if user else {
                "authenticated": False, "error": "invalid bearer token"}
            self._send(201, {**body, "status": status})
        elif url.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
            spec = body.get("spec", {})
            allowed = (spec.get("user") in self.state.allowed_users
                       and spec.get("nonResourceAttributes", {}).get("verb") == "get")
            status = {"allowed": allowed}
            if not allowed:
                status["reason"] = "no RBAC policy matched"
            self._send(201, {**body, "status": status})
        else:
            self._send(404, _status(404, "NotFound", "not found"))


@contextmanager
def running_apiserver(state: ApiState, workdir: Path) -> Iterator[tuple[str, Path]]:
    """(URL, kubeconfig path) of a stand-in API server serving `state`."""
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": url}}],
        "users": [{"name": "scanner", "user": {"token": SCAN_TOKEN}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "scanner"}}],
    }))
    try:
        yield url, kubeconfig
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)

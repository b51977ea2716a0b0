"""A stand-in for kube-apiserver's webhook-configuration endpoints (no apiserver runs here).

It emulates, per the Kubernetes API conventions and the admissionregistration.k8s.io/v1
reference, what `mlgate certs inject-ca` and `serve --self-signed` use:

- GET and PATCH of
  `/apis/admissionregistration.k8s.io/v1/{mutating,validating}webhookconfigurations/<name>`
  over HTTPS with a bearer token (401 without it);
- PATCH content types: `application/strategic-merge-patch+json` (the `webhooks` list merges
  on its patchMergeKey `name`, maps merge recursively, null deletes), `merge-patch+json`
  (RFC 7386: lists replaced) and `json-patch+json` (RFC 6902); others get 415;
- a `metadata.resourceVersion` in a patch is a precondition: 409 Conflict when stale;
  every change bumps the resourceVersion;
- errors are `Status` objects (404 NotFound, 409 Conflict, 401 Unauthorized, ...).

Every request is recorded so tests can assert what the real `kubernetes` client sent.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from webhook import certs

PREFIX = "/apis/admissionregistration.k8s.io/v1/"
PLURALS = {"mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
           "validatingwebhookconfigurations": "ValidatingWebhookConfiguration"}
TOKEN = "stand-in-token"


@dataclass
class Recorded:
    method: str
    path: str
    content_type: str
    body: Any
    status: int


@dataclass
class StandInApiServer:
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    # called with (plural, name) just before a PATCH is applied: simulates a concurrent writer
    before_patch: Callable[[str, str], None] | None = None
    url: str = ""
    ca_file: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _version: int = 100

    def add(self, plural: str, name: str, webhooks: list[str]) -> None:
        """A configuration like the chart renders in self-managed mode (no caBundle)."""
        path = "/mutate" if plural.startswith("mutating") else "/validate"
        self._version += 1
        self.objects[(plural, name)] = {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": PLURALS[plural],
            "metadata": {"name": name, "resourceVersion": str(self._version),
                         "uid": f"uid-{name}"},
            "webhooks": [{"name": hook, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "clientConfig": {"service": {"name": "mlgate",
                                                       "namespace": "mlgate-system",
                                                       "path": path, "port": 443}}}
                         for hook in webhooks]}

    def bundles(self, plural: str, name: str) -> list[str | None]:
        """The caBundle (base64) of every webhook of one configuration."""
        return [hook["clientConfig"].get("caBundle")
                for hook in self.objects[(plural, name)]["webhooks"]]

    def patches(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PATCH"]

    def write(self, plural: str, name: str, obj: dict[str, Any]) -> None:
        """Store a changed object, bumping the resourceVersion like etcd would."""
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self.objects[(plural, name)] = obj

    def kubeconfig(self, directory: Path, token: str = TOKEN) -> Path:
        assert self.ca_file is not None
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "mlgate", "user": {"token": token}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in",
                                                          "user": "mlgate"}}]}))
        return path


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Strategic merge for this API: `webhooks` merges on `name`; other lists replace."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif path == () and key == "webhooks" and isinstance(value, list):
            merged = {hook["name"]: hook for hook in out.get("webhooks", [])}
            order = [hook["name"] for hook in out.get("webhooks", [])]
            for hook in value:
                name = hook["name"]
                if name in merged:
                    merged[name] = strategic_merge(merged[name], hook, (*path, key))
                else:
                    merged[name] = copy.deepcopy(hook)
                    order.append(name)
            out["webhooks"] = [merged[name] for name in order]
        else:
            out[key] = strategic_merge(out.get(key), value, (*path, key))
    return out


def json_merge(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = json_merge(out.get(key), value)
    return out


def _handler(state: StandInApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            code, answer = self._route(method, content_type, body)
            with state.lock:
                state.requests.append(Recorded(method, self.path, content_type, body, code))
            self._answer(code, answer)

        def _route(self, method: str, content_type: str,
                   body: Any) -> tuple[int, dict[str, Any]]:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return 401, _status(401, "Unauthorized", "Unauthorized")
            path = self.path.split("?")[0]
            if not path.startswith(PREFIX) or path[len(PREFIX):].count("/") != 1:
                return 404, _status(404, "NotFound", "the server could not find the requested "
                                    "resource")
            plural, name = path[len(PREFIX):].split("/")
            if plural not in PLURALS:
                return 404, _status(404, "NotFound", f"unknown resource {plural}")
            with state.lock:
                current = state.objects.get((plural, name))
            if current is None:
                return 404, _status(404, "NotFound", f'{plural}.admissionregistration.k8s.io '
                                    f'"{name}" not found')
            if method == "GET":
                return 200, current
            if state.before_patch is not None:
                state.before_patch(plural, name)
            with state.lock:
                current = state.objects[(plural, name)]
                try:
                    if content_type == "application/strategic-merge-patch+json":
                        patched = strategic_merge(current, body)
                    elif content_type == "application/merge-patch+json":
                        patched = json_merge(current, body)
                    elif content_type == "application/json-patch+json":
                        patched = jsonpatch.apply_patch(current, body)
                    else:
                        return 415, _status(415, "UnsupportedMediaType",
                                            f"the body of the request was in an unknown "
                                            f"format - accepted media types include: "
                                            f"application/json-patch+json, ... ({content_type})")
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
                        KeyError, TypeError) as exc:
                    return 422, _status(422, "Invalid", str(exc))
                wanted = patched["metadata"].get("resourceVersion")
                if wanted != current["metadata"]["resourceVersion"]:
                    return 409, _status(409, "Conflict", f'Operation cannot be fulfilled on '
                                        f'{plural}.admissionregistration.k8s.io "{name}": the '
                                        f'object has been modified; please apply your changes '
                                        f'to the latest version and try again')
                if patched != current:
                    state.write(plural, name, patched)
                return 200, state.objects[(plural, name)]

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle("PATCH")

    return Handler


@contextmanager
def running(directory: Path) -> Iterator[StandInApiServer]:
    """The stand-in on 127.0.0.1, HTTPS with its own CA, stopped on exit."""
    bundle = certs.generate("kubernetes", "default")
    paths = certs.write(bundle, directory / "apiserver-pki")
    state = StandInApiServer(ca_file=paths[certs.CA_FILE])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths[certs.CERT_FILE], paths[certs.KEY_FILE])
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state.url = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)

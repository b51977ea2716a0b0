"""The real server over TLS on loopback, driven as kube-apiserver drives a webhook.

These tests do what kube-apiserver does (per the Kubernetes docs on dynamic admission
control): POST an AdmissionReview over HTTPS, verify the server with the CA bundle, apply
the returned JSONPatch to the object, and send the result on to the validating webhook. They
check the webhook protocol request by request, in seconds; tests/e2e sends the same through
the real kube-apiserver.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest

from tests import factories
from tests.factories import GPU, container, pod, pod_spec
from tests.server import RunningServer, running_server

pytestmark = pytest.mark.integration
K8S_VERSION = "1.33"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("server")
    cfg = workdir / "mlgate.yaml"
    cfg.write_text("maxRequestBytes: 200000\n")
    with running_server(workdir, config=cfg) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def post(client: httpx.Client, path: str, review: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=review)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["apiVersion"] == review["apiVersion"]
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == review["request"]["uid"]
    return answer["response"]


def apply_patch(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "patch" not in response:
        return obj
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.JsonPatch(ops).apply(obj)


def gpu_pod() -> dict[str, Any]:
    return pod(pod_spec(container("trainer", limits={"cpu": "4", "memory": "16Gi", **GPU})))


PYTORCHJOB = {
    "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
    "metadata": {"name": "resnet", "namespace": "ml"},
    "spec": {"pytorchReplicaSpecs": {
        role: {"replicas": n, "restartPolicy": "OnFailure", "template": {"spec": pod_spec(
            container("pytorch", limits={"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": 4}))}}
        for role, n in (("Master", 1), ("Worker", 3))}},
}


# -- TLS ------------------------------------------------------------------------------
def test_server_certificate_verifies_against_the_ca(server: RunningServer) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), \
            httpx.Client(verify=True) as untrusting:
        untrusting.get(server.url + "/healthz")
    with server.client() as trusting:
        assert trusting.get("/healthz").json() == {"status": "ok"}


def test_tls_is_1_2_or_newer(server: RunningServer) -> None:
    # Debian's OpenSSL refuses TLS 1.0/1.1 on the client side too, so an old-protocol
    # handshake cannot tell whether the server refuses it; check the server's floor and
    # what a default client negotiates instead.
    from webhook import tls

    assert tls.ReloadingContext(server.cert, server.key).context.minimum_version == \
        ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            server.ssl_context().wrap_socket(raw, server_hostname="localhost") as wrapped:
        assert wrapped.version() in ("TLSv1.2", "TLSv1.3")


def test_an_idle_keep_alive_connection_outlives_a_pause_in_traffic(
        server: RunningServer) -> None:
    """The API server reuses idle connections for up to 90 s; were the server to close them
    sooner (uvicorn's default is 5 s), a request racing the close fails with EOF."""
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10,
                                       context=server.ssl_context())
    conn.connect()
    first_socket = conn.sock
    try:
        for pause in (0, 6.5):
            time.sleep(pause)
            conn.request("GET", "/healthz", headers={"Host": "mlgate"})
            response = conn.getresponse()  # RemoteDisconnected if the server closed it
            assert response.status == 200 and response.read() == b'{"status":"ok"}'
            assert conn.sock is first_socket  # the same connection, not a new one
    finally:
        conn.close()


def test_plain_http_is_not_served(server: RunningServer) -> None:
    with httpx.Client(timeout=5) as plain, pytest.raises(httpx.TransportError):
        plain.get(f"http://127.0.0.1:{server.port}/healthz")


def test_ready_names_the_loaded_policies(client: httpx.Client) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["policies"] == ["gpu-tolerations", "default-resources", "require-limits"]


# -- the API server's path ------------------------------------------------------------
@pytest.mark.parametrize("obj", [gpu_pod(), PYTORCHJOB], ids=["Pod", "PyTorchJob"])
def test_mutate_apply_validate_idempotent(client: httpx.Client, obj: dict[str, Any]) -> None:
    response = post(client, "/mutate", factories.admission_review(obj))
    assert response["allowed"] is True
    patched = apply_patch(obj, response)
    assert patched != obj
    if obj["kind"] == "Pod":
        kubernetes_validate.validate(patched, K8S_VERSION, strict=True)
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
            patched["spec"]["tolerations"]
    else:
        for role in ("Master", "Worker"):
            spec = patched["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod",
                                          "metadata": {"name": "x"}, "spec": spec},
                                         K8S_VERSION, strict=True)
            assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    validated = post(client, "/validate", factories.admission_review(patched))
    assert validated["allowed"] is True
    assert "patch" not in validated and "patchType" not in validated
    again = post(client, "/mutate", factories.admission_review(patched))
    assert "patch" not in again, "a second pass must not change anything"


def test_denial_names_every_violation(client: httpx.Client) -> None:
    obj = pod(pod_spec(container("a"), container("b", limits={"memory": "1Gi"})))
    response = post(client, "/validate", factories.admission_review(obj))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403 and response["status"]["reason"] == "Forbidden"
    assert response["status"]["message"].count("[require-limits]") == 3
    assert response["auditAnnotations"] == {"violated-policies": "require-limits"}


def test_v1beta1_is_answered_in_v1beta1(client: httpx.Client) -> None:
    review = factories.admission_review(gpu_pod(), api_version="admission.k8s.io/v1beta1")
    assert post(client, "/mutate", review)["allowed"] is True


def test_delete_is_allowed(client: httpx.Client) -> None:
    review = factories.admission_review(None, old=gpu_pod(), operation="DELETE")
    assert post(client, "/validate", review) == {"uid": review["request"]["uid"],
                                                 "allowed": True}


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "headers", "status", "reason"), [
    (b"{oops", {"content-type": "application/json"}, 400, "not valid JSON"),
    (json.dumps({"apiVersion": "v1", "kind": "AdmissionReview", "request": {}}).encode(),
     {"content-type": "application/json"}, 400, "apiVersion"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"kind": {"kind": "Pod"}, "operation": "CREATE"}}).encode(),
     {"content-type": "application/json"}, 400, "request.uid"),
    (b"{}", {"content-type": "text/plain"}, 415, "content type"),
    (b"x" * 300_000, {"content-type": "application/json"}, 413, "over the limit"),
])
def test_bad_input_gets_a_one_line_4xx_and_the_next_request_is_served(
        client: httpx.Client, content: bytes, headers: dict[str, str], status: int,
        reason: str) -> None:
    for path in ("/mutate", "/validate"):
        response = client.post(path, content=content, headers=headers)
        assert response.status_code == status
        error = response.json()["error"]
        assert reason in error and "\n" not in error
    assert post(client, "/validate", factories.admission_review(gpu_pod()))["allowed"]


def test_chunked_body_over_the_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * 10_000

    response = client.post("/validate", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_unknown_route_is_404_not_500(client: httpx.Client) -> None:
    assert client.post("/admit", json={}).status_code == 404


# -- configuration at run time --------------------------------------------------------
def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def test_config_reload_and_last_good_config(tmp_path: Path) -> None:
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text("policies: {require-limits: {mode: enforce}}\n")
    bare = pod(pod_spec(container()))
    with running_server(tmp_path, config=cfg) as running, running.client() as c:
        def allowed() -> bool:
            return bool(post(c, "/validate", factories.admission_review(bare))["allowed"])

        assert not allowed()
        cfg.write_text("policies: {require-limits: {mode: warn}}\n")
        wait_for(allowed)
        cfg.write_text("policies: {require-limits: {mode: sometimes}}\n")
        wait_for(lambda: "configuration rejected" in running.output())
        assert "policies.require-limits.mode" in running.output()
        assert allowed(), "the last good configuration keeps serving"
        assert c.get("/readyz").status_code == 200


def test_invalid_config_at_start_is_a_startup_error(tmp_path: Path) -> None:
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text("policies: {require-limits: {params: {resources: [cpu], extra: 1}}}\n")
    result = subprocess.run([sys.executable, "-m", "webhook.cli", "serve", "--config", str(cfg),
                             "--port", "0"], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert "policies.require-limits.params.extra" in result.stderr


def test_serve_without_tls_files_makes_development_certificates(tmp_path: Path) -> None:
    from webhook import server as server_module

    port = server_module.free_port()
    process = subprocess.Popen([sys.executable, "-m", "webhook.cli", "serve", "--host",
                                "127.0.0.1", "--port", str(port)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ca = tmp_path / "certs" / "ca.crt"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"https://localhost:{port}/readyz",
                                     verify=ssl.create_default_context(cafile=str(ca)))
                break
            except (httpx.TransportError, FileNotFoundError, ssl.SSLError):
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
        assert response.status_code == 200
        assert {p.name for p in (tmp_path / "certs").iterdir()} >= {"ca.crt", "tls.crt",
                                                                   "tls.key"}
    finally:
        process.terminate()
        process.wait(15)


def test_several_workers_share_the_port(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "2") as running, running.client() as c:
        for _ in range(10):
            assert post(c, "/validate", factories.admission_review(gpu_pod()))["allowed"]

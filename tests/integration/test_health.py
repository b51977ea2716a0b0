"""Health and metrics on their own listener (issue 12, point 3): probes answer on the
health port even when the admission port takes no new connection. Real server."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.server import RunningServer, running_server
from webhook import server as server_module

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    workdir = tmp_path_factory.mktemp("health")
    cfg = workdir / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({"connections": {"maxConnections": 20,
                                                   "firstRequestTimeout": "30s"}}))
    port = server_module.free_port()
    with running_server(workdir, "--health-port", str(port), config=cfg) as running:
        yield running, f"http://127.0.0.1:{port}"


def test_probes_and_metrics_answer_on_the_health_port(
        served: tuple[RunningServer, str]) -> None:
    _, health = served
    assert httpx.get(f"{health}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{health}/readyz")
    assert ready.status_code == 200 and "require-limits" in ready.json()["policies"]
    assert "mlgate_admission_requests" in httpx.get(f"{health}/metrics").text
    assert httpx.get(f"{health}/validate").status_code == 404
    assert httpx.post(f"{health}/readyz").status_code == 405


def test_bad_or_silent_clients_are_turned_away(served: tuple[RunningServer, str]) -> None:
    running, health = served
    port = int(health.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(100).startswith(b"HTTP/1.1 400")  # nothing sent: the deadline
        assert time.monotonic() - started < 2 + 2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert httpx.get(f"{health}/healthz").status_code == 200


def test_probes_answer_while_the_admission_port_is_full(
        served: tuple[RunningServer, str]) -> None:
    running, health = served
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(25):  # past connections.maxConnections (20), each idle
            raw = socket.create_connection(("127.0.0.1", running.port), timeout=5)
            try:
                held.append(running.ssl_context().wrap_socket(
                    raw, server_hostname="mlgate.mlgate-system.svc"))
            except OSError:
                raw.close()
        with pytest.raises(httpx.HTTPError), running.client() as client:
            client.get("/readyz")  # a probe on the admission port fails...
        started = time.monotonic()  # ...while the health port answers at once
        assert httpx.get(f"{health}/readyz", timeout=1).status_code == 200
        print(f"readyz on the health port: {(time.monotonic() - started) * 1000:.1f} ms")
    finally:
        for sock in held:
            sock.close()

"""Connection limits, as a front proxy would set them (issue 12, point 1): oversized and
slow requests, connections that never send one, and too many connections are answered or
closed in bounded time, and normal requests keep being answered meanwhile. Real server
over TLS on loopback; raw TLS sockets play the hostile clients."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import factories
from tests.server import RunningServer, running_server

pytestmark = pytest.mark.integration

SLACK = 2.0  # a busy 2-core test machine
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("connections")
    cfg = workdir / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({"connections": {
        "maxHeaderBytes": 65536, "headerTimeout": "1s", "bodyTimeout": "1s",
        "firstRequestTimeout": "1s", "maxConnections": 40}}))
    with running_server(workdir, config=cfg) as running:
        yield running


@contextlib.contextmanager
def tls(server: RunningServer) -> Iterator[ssl.SSLSocket]:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with server.ssl_context().wrap_socket(raw, server_hostname="mlgate.mlgate-system.svc") as s:
        yield s


def answer_of(sock: ssl.SSLSocket, within: float) -> tuple[bytes, float]:
    """(everything the server sends until it closes, seconds until it closed)."""
    started = time.monotonic()
    sock.settimeout(within)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        except TimeoutError:
            pytest.fail(f"the server did not close the connection within {within} s")
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def admitted(server: RunningServer) -> bool:
    with server.client() as client:
        return client.post("/validate", json=factories.admission_review(POD)).status_code == 200


def test_an_endless_header_is_a_431_past_the_cap(server: RunningServer) -> None:
    with tls(server) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Filler: ")
        sent, started, reply = 0, time.monotonic(), b""
        with contextlib.suppress(OSError):
            while sent < 4 * 1024 * 1024 and not reply:  # the server must stop us first
                sock.sendall(b"a" * 4096)
                sent += 4096
                if select.select([sock], [], [], 0)[0]:  # a TLS record: maybe the answer
                    sock.setblocking(False)
                    with contextlib.suppress(ssl.SSLWantReadError):
                        reply = sock.recv(65536)
                    sock.setblocking(True)
        rest, _ = answer_of(sock, SLACK)
        reply += rest
        took = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b"65536" in reply
    # what the client got to send includes the loopback socket buffers (megabytes)
    assert sent < 4 * 1024 * 1024, "the server let a 4 MiB header in"
    print(f"header cap: 431 after {sent} bytes sent, {took * 1000:.0f} ms")
    assert admitted(server)


def test_a_normal_request_with_large_headers_under_the_cap_is_answered(
        server: RunningServer) -> None:
    with server.client() as client:
        answer = client.post("/validate", json=factories.admission_review(POD),
                             headers={"X-Large": "b" * 30000})
    assert answer.status_code == 200


def test_headers_that_never_end_are_a_408_after_the_header_timeout(
        server: RunningServer) -> None:
    with tls(server) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
        reply, took = answer_of(sock, 1.0 + SLACK)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert b"connections.headerTimeout" in reply
    print(f"slow headers: closed after {took:.2f} s (headerTimeout 1 s)")


def test_a_body_that_never_ends_is_a_408_after_the_body_timeout(server: RunningServer) -> None:
    with tls(server) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"apiVersion\":")
        reply, took = answer_of(sock, 1.0 + SLACK)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert b"connections.bodyTimeout" in reply
    print(f"slow body: closed after {took:.2f} s (bodyTimeout 1 s)")
    assert "Traceback" not in server.output()


def test_a_connection_that_sends_nothing_is_closed(server: RunningServer) -> None:
    with tls(server) as sock:
        reply, took = answer_of(sock, 1.0 + SLACK)
    assert reply == b""
    print(f"no request after the handshake: closed after {took:.2f} s")


def test_keep_alive_connections_carry_many_requests(server: RunningServer) -> None:
    with server.client() as client:
        for _ in range(5):
            assert client.post("/validate", json=factories.admission_review(POD)).is_success
            time.sleep(0.3)


def test_connections_past_the_cap_are_refused_with_a_log_line(server: RunningServer) -> None:
    held: list[ssl.SSLSocket] = []
    try:
        refused_at = None
        for index in range(60):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            try:
                sock = server.ssl_context().wrap_socket(
                    raw, server_hostname="mlgate.mlgate-system.svc")
                held.append(sock)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if not sock.recv(100):
                    raise ConnectionResetError
            except (OSError, ssl.SSLError):
                raw.close()
                refused_at = index
                break
        assert refused_at is not None and 35 <= refused_at <= 40, refused_at
        assert "connections.maxConnections" in server.output()
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while not admitted(server):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_low_open_file_limit_lowers_the_cap_and_says_so(tmp_path: Path) -> None:
    """Under `ulimit -n 256`, 1000 connections cannot fit: the cap becomes 128 and the log
    says so; connections past it are closed while normal requests on open ones go on."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nulimit -n 256\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    with running_server(tmp_path, python=str(wrapper)) as server:
        assert "at most 128 connections at once" in server.output()
        with server.client() as client:
            assert client.get("/healthz").status_code == 200  # its connection is open first
            held = []
            try:
                for _ in range(300):  # past the fd limit itself
                    with contextlib.suppress(OSError):
                        held.append(tls_open(server))
                assert client.post("/validate",
                                   json=factories.admission_review(POD)).status_code == 200
            finally:
                for sock in held:
                    sock.close()
        assert "the limit of connections.maxConnections" in server.output()
        assert "Too many open files" not in server.output()


def tls_open(server: RunningServer) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        return server.ssl_context().wrap_socket(raw, server_hostname="mlgate.mlgate-system.svc")
    except BaseException:
        raw.close()
        raise

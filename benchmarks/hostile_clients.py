"""Hostile clients against `mlgate serve` with its default connection limits, over TLS.

    python benchmarks/hostile_clients.py [--attackers 4] [--idle 600]

Prints, with the defaults of `connections:` (issue 12 point 1):

- endless header: how long until a client streaming an unterminated header gets its 431,
  and the p50/p99 of normal /validate requests while `--attackers` clients keep doing it;
- slow headers / slow body / no request: when the server closes each kind of connection;
- idle connections: `--idle` TLS connections that never send a request (past the fd
  budget of a 512-fd process), and the p50 of normal requests meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import factories  # noqa: E402
from tests.server import RunningServer, running_server  # noqa: E402

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox",
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}


def connect(server: RunningServer) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return server.ssl_context().wrap_socket(raw, server_hostname="mlgate.mlgate-system.svc")


def closed_after(sock: ssl.SSLSocket, limit: float = 60) -> tuple[float, bytes]:
    started, reply = time.monotonic(), b""
    sock.settimeout(limit)
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            reply += chunk
    return time.monotonic() - started, reply[:12]


def endless_header(server: RunningServer, stop: threading.Event, times: list[float]) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError), connect(server) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Filler: ")
            sock.settimeout(0.001)
            while not stop.is_set():
                sock.sendall(b"a" * 16384)
                try:
                    if sock.recv(100):
                        times.append(time.monotonic() - started)
                        break
                except (TimeoutError, ssl.SSLWantReadError):
                    continue


def latencies(server: RunningServer, seconds: float) -> list[float]:
    found = []
    review = factories.admission_review(POD)
    with server.client() as client:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.monotonic()
            assert client.post("/validate", json=review).status_code == 200
            found.append(time.monotonic() - started)
    return found


def ms(values: list[float], q: float) -> str:
    return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--idle", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, running_server(Path(workdir)) as server:
        base = latencies(server, 3)
        print(f"normal /validate, alone: p50 {ms(base, 50)}, p99 {ms(base, 99)}")

        stop, times = threading.Event(), []
        threads = [threading.Thread(target=endless_header, args=(server, stop, times))
                   for _ in range(args.attackers)]
        for thread in threads:
            thread.start()
        during = latencies(server, 5)
        stop.set()
        for thread in threads:
            thread.join()
        print(f"endless header x{args.attackers}: {len(times)} answered 431, median "
              f"{statistics.median(times) * 1000:.1f} ms after the first byte; normal "
              f"/validate meanwhile p50 {ms(during, 50)}, p99 {ms(during, 99)}")

        with connect(server) as sock:
            sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
            took, reply = closed_after(sock)
            print(f"slow headers: {reply!r} after {took:.2f} s")
        with connect(server) as sock:
            sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            took, reply = closed_after(sock)
            print(f"slow body: {reply!r} after {took:.2f} s")
        with connect(server) as sock:
            took, reply = closed_after(sock)
            print(f"no request after the handshake: closed after {took:.2f} s")

        idle = [connect(server) for _ in range(args.idle)]
        during = latencies(server, 3)
        print(f"{args.idle} idle TLS connections: normal /validate p50 {ms(during, 50)}, "
              f"p99 {ms(during, 99)}")
        took, _ = closed_after(idle[-1])
        print(f"...the last of them closed by the server after {took:.2f} s")
        for sock in idle:
            sock.close()


if __name__ == "__main__":
    main()

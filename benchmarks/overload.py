"""Admission and probes under overload, over HTTPS, with wrk (issue 12 point 3).

    python benchmarks/overload.py [--connections 512 2048] [--duration 10]

For each connection count, wrk keeps that many keep-alive connections POSTing a GPU Pod
review to /validate of `mlgate serve` with its defaults (maxInFlight 256, maxConnections
1000), while a probe opens a new TLS connection every 0.5 s and GETs /readyz with a 1 s
timeout, as the kubelet's readiness probe does, on the admission port and on the health
port (`--health-port`). Prints wrk's latencies and errors and the
probe's latencies and failures. Run with `ulimit -n` above the connection count.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import factories  # noqa: E402
from tests.server import running_server  # noqa: E402
from webhook import server as server_module  # noqa: E402

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox",
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}


def probe(url: str, context: ssl.SSLContext, stop: threading.Event,
          found: list[float | None]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with httpx.Client(verify=context, timeout=1.0) as client:
                ok = client.get(f"{url}/readyz").status_code == 200
            found.append(time.monotonic() - started if ok else None)
        except httpx.HTTPError:
            found.append(None)
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    health_port = server_module.free_port()
    with tempfile.TemporaryDirectory() as workdir, running_server(
            Path(workdir), "--health-port", str(health_port)) as server:
        probes = {"admission port (TLS)": server.url,
                  "health port": f"http://127.0.0.1:{health_port}"}
        context = ssl.create_default_context(cafile=str(server.ca))
        body = Path(workdir) / "review.json"
        body.write_text(httpx.Response(200, json=factories.admission_review(POD)).text)
        script = Path(workdir) / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = '
                          f'"application/json"\nlocal f = io.open("{body}", "rb")\n'
                          "wrk.body = f:read('*a')\nf:close()\n")
        for connections in args.connections:
            stop = threading.Event()
            found: dict[str, list[float | None]] = {name: [] for name in probes}
            threads = [threading.Thread(target=probe, args=(url, context, stop, found[name]))
                       for name, url in probes.items()]
            for thread in threads:
                thread.start()
            wrk = subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{args.duration:g}s", "--latency",
                 "-s", str(script), f"{server.url}/validate"],
                capture_output=True, text=True, timeout=args.duration + 60)
            stop.set()
            for thread in threads:
                thread.join()
            lines = [line.strip() for line in wrk.stdout.splitlines()
                     if any(k in line for k in ("50%", "99%", "requests in", "Non-2xx",
                                                "Socket errors", "Requests/sec"))]
            print(f"--- {connections} connections: " + "; ".join(lines))
            for name, times in found.items():
                answered = [t for t in times if t is not None]
                print(f"    probe /readyz on a new connection, {name}: {len(answered)} of "
                      f"{len(times)} answered within 1 s" + (
                          f", median {statistics.median(answered) * 1000:.0f} ms, max "
                          f"{max(answered) * 1000:.0f} ms" if answered else ""))
        overloaded = [line for line in server.output().splitlines() if "overloaded" in line]
        print(f"    'overloaded' log lines: {len(overloaded)}")


if __name__ == "__main__":
    main()

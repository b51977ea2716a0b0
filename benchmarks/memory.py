"""Memory of `mlgate serve` under steady load: no growth per request.

    python benchmarks/memory.py [--minutes 10] [--connections 32]

Runs `mlgate serve` as a user does (default policies, SQLite journal, JSON decision log,
metrics) and drives /validate and /mutate with wrk for `--minutes`, with reviews that vary
what could make state grow: 200 namespaces, 1,000 object names, the kinds of the workload
table and 100 kinds it does not know (which must not become new metric label values).
RSS is sampled every 10 s. Target (issue 11): RSS after the last minute within 20 MB of RSS
after the first minute.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import admission as admission_bench  # noqa: E402
from benchmarks import loadgen  # noqa: E402
from tests import factories, server  # noqa: E402


def reviews(count: int = 400) -> list[bytes]:
    rng = random.Random(7)
    bodies = []
    for i in range(count):
        obj: dict[str, Any] = (admission_bench.pytorchjob() if i % 4 == 0
                               else admission_bench.gpu_pod())
        obj["metadata"]["name"] = f"obj-{rng.randrange(1000)}"
        obj["metadata"]["namespace"] = f"team-{rng.randrange(200)}"
        review = factories.admission_review(obj, namespace=obj["metadata"]["namespace"])
        review["request"]["uid"] = f"uid-{i}"
        if i % 8 == 1:  # a kind mlgate does not know: passes, must not add label values
            review["request"]["kind"]["kind"] = f"Unknown{i % 100}"
        bodies.append(json.dumps(review).encode())
    return bodies


def lua_script(directory: Path, bodies: list[bytes]) -> Path:
    """A wrk script that posts a random one of `bodies` to /validate or /mutate."""
    for i, body in enumerate(bodies):
        (directory / f"body-{i}.json").write_bytes(body)
    script = directory / "mixed.lua"
    script.write_text(f"""
local bodies = {{}}
for i = 0, {len(bodies) - 1} do
  local f = io.open("{directory}/body-" .. i .. ".json", "rb")
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
local paths = {{"/validate", "/mutate"}}
request = function()
  return wrk.format("POST", paths[math.random(2)],
                    {{["Content-Type"] = "application/json"}}, bodies[math.random(#bodies)])
end
""")
    return script


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    wrk = loadgen.wrk_binary()
    duration = args.minutes * 60
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="mlgate-memory-") as tmp, \
            server.running_server(Path(tmp), "--data-dir", str(Path(tmp) / "data")) as running:
        script = lua_script(Path(tmp), reviews())
        load = subprocess.Popen([wrk, "-t1", f"-c{args.connections}", f"-d{duration:g}s",
                                 "--latency", "-s", str(script), running.url],
                                stdout=subprocess.PIPE, text=True)
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.append(load.communicate()[0]))
        reader.start()
        started = time.monotonic()
        while load.poll() is None:
            samples.append((time.monotonic() - started, rss_mb(running.process.pid)))
            time.sleep(10)
        reader.join()
        with running.client() as client:
            series = [line for line in client.get("/metrics").text.splitlines()
                      if line.startswith("mlgate_") and not line.startswith("#")]
    figures = loadgen.parse(output[0])
    first = [rss for t, rss in samples if t <= 60][-1]
    last = samples[-1][1]
    print(f"{args.minutes:g} minutes of wrk ({args.connections} connections), "
          f"{figures.requests_per_second:.0f} req/s, p99 {figures.p99_ms:.1f} ms, "
          f"errors {figures.errors + figures.non_2xx}; {len(series)} mlgate_* series")
    for t, rss in samples[::6]:
        print(f"  {t / 60:5.1f} min  RSS {rss:6.1f} MB")
    grown = last - first
    print(f"RSS after the first minute {first:.1f} MB, at the end {last:.1f} MB: "
          f"{grown:+.1f} MB (target <= +20 MB: {'met' if grown <= 20 else 'NOT met'})")
    return 0 if grown <= 20 else 1


if __name__ == "__main__":
    sys.exit(main())

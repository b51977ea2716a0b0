"""What signature checks cost /validate, warm and cold, over HTTPS against the real server.

    python benchmarks/signatures.py [--requests 400] [--rounds 3] [--cold 20]

A real registry (Debian's docker-registry) holds signed images. Two `mlgate serve`
processes run side by side: one with image-signatures enabled, one without (the floor,
same config otherwise). Requests alternate between them so machine noise hits both
alike. Warm: the same signed image over and over (verdict cached in-process); target
p50(with) - p50(without) <= 0.5 ms. Cold: each request names a freshly pushed image
(tag resolution, .sig and referrer lookups, signature check, all over loopback).
Figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import factories  # noqa: E402
from tests.server import running_server  # noqa: E402
from tests.signatures.conftest import _start  # noqa: E402
from tests.signatures.signer import Signer  # noqa: E402


def review(image: str) -> dict[str, Any]:
    c = factories.container("trainer", image, limits={"cpu": "8", "memory": "64Gi",
                                                      "nvidia.com/gpu": "4"})
    return factories.admission_review(factories.pod(factories.pod_spec(c)))


def timed(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.post("/validate", json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.json()["response"]["allowed"], response.text
    return elapsed * 1000


@contextlib.contextmanager
def paired_servers(work: Path, config_for: Callable[[bool], dict[str, Any]],
                   ) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two `mlgate serve`, with the feature (config_for(True)) and without; their clients."""
    files = {}
    for label, enabled in (("with", True), ("without", False)):
        (work / label).mkdir()
        files[label] = work / label / "mlgate.yaml"
        files[label].write_text(yaml.safe_dump(config_for(enabled)))
    with running_server(work / "with", config=files["with"]) as on, \
            running_server(work / "without", config=files["without"]) as off, \
            on.client() as c_on, off.client() as c_off:
        yield c_on, c_off


def paired_rounds(on: httpx.Client, off: httpx.Client, body: dict[str, Any], rounds: int,
                  requests: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """p50 and p99 per round of two servers, requests interleaved so noise hits both alike."""
    p50_on: list[float] = []
    p50_off: list[float] = []
    p99_on: list[float] = []
    p99_off: list[float] = []
    for _ in range(rounds):
        on_ms, off_ms = [], []
        for _ in range(requests):
            on_ms.append(timed(on, body))
            off_ms.append(timed(off, body))
        p50_on.append(statistics.median(on_ms))
        p50_off.append(statistics.median(off_ms))
        p99_on.append(statistics.quantiles(on_ms, n=100)[98])
        p99_off.append(statistics.quantiles(off_ms, n=100)[98])
    return p50_on, p50_off, p99_on, p99_off


def config(host: str, pem: str, enabled: bool) -> dict[str, Any]:
    rule = {"name": "ml", "images": [f"{host}/ml/*"], "keys": [{"pem": pem}]}
    return {"registries": {"insecure": [host], "deadline": "1500ms"},
            "policies": {"image-signatures": {"mode": "enforce" if enabled else "off",
                                              "params": {"rules": [rule]}}}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", type=int, default=20)
    args = parser.parse_args()
    signer = Signer()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "reg").mkdir()
        registry_run = _start(work / "reg")
        reg = next(registry_run)
        digest = reg.pusher.image("ml/train", "1.0")
        signer.legacy(reg.pusher, "ml/train", digest)
        with paired_servers(work, lambda on: config(reg.host, signer.public_pem, on)) as (
                c_on, c_off):
            body = review(f"{reg.host}/ml/train:1.0")
            for _ in range(50):  # warm up connections and caches
                timed(c_on, body)
                timed(c_off, body)
            p50_on, p50_off, p99_on, p99_off = paired_rounds(c_on, c_off, body, args.rounds,
                                                             args.requests)
            cold = []
            for _ in range(args.cold):
                name = f"ml/cold-{uuid.uuid4().hex[:8]}"
                d = reg.pusher.image(name, "1.0")
                signer.legacy(reg.pusher, name, d)
                cold.append(timed(c_on, review(f"{reg.host}/{name}:1.0")))
        with contextlib.suppress(StopIteration):
            next(registry_run)  # stops the registry
    warm_on, warm_off = statistics.median(p50_on), statistics.median(p50_off)
    delta = warm_on - warm_off
    print(f"warm p50 /validate: with signatures {warm_on:.3f} ms, without {warm_off:.3f} ms, "
          f"delta {delta:+.3f} ms (target <= 0.5 ms: {'met' if delta <= 0.5 else 'MISSED'})")
    print(f"warm p99 /validate: with {statistics.median(p99_on):.3f} ms, "
          f"without {statistics.median(p99_off):.3f} ms")
    print(f"cold /validate (fresh signed image, {args.cold} images): p50 "
          f"{statistics.median(cold):.2f} ms, max {max(cold):.2f} ms "
          f"({statistics.median(cold) / warm_off:.1f}x the floor's p50)")
    return 0 if delta <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())

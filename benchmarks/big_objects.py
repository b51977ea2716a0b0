"""Big objects over HTTPS with the whole example library (issue 11, point 4).

    python benchmarks/big_objects.py [--duration 10] [--rounds 3] [--connections 1]
                                     [--all-gpu]

A Pod with 300 containers (8 with a GPU each, the rest CPU-only; `--all-gpu` gives every
container an `nvidia.com/gpu` entry, the worst case, where the GPU policies edit all 300)
and a RayCluster with 50 GPU worker groups go to `/mutate` and then, mutated as the API
server would store them, to `/validate` of a server run as `mlgate serve --config
examples/mlgate.yaml` runs (SQLite journal, JSON decision log, metrics), with wrk over
HTTPS; rounds alternate the cases and the figures are medians. Target: p99 <= 20 ms for
each request. Both objects are admitted (a benchmark of denials would skip most of the
work), which the script checks before it measures.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import admission, loadgen, policies_big  # noqa: E402
from tests import factories  # noqa: E402
from webhook import patches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
P99_TARGET_MS = 20.0


def wide_pod(containers: int = 300, all_gpu: bool = False) -> dict[str, Any]:
    """A Pod of `containers` containers; only the first 8 name a GPU unless `all_gpu`."""
    pod = policies_big.big_pod(containers)
    if not all_gpu:
        for container in pod["spec"]["containers"][8:]:
            del container["resources"]["limits"]["nvidia.com/gpu"]
    return pod


def raycluster(groups: int = 50) -> dict[str, Any]:
    """50 worker groups of one GPU pod each: 51 GPUs, inside the example's cap of 64."""
    cluster = policies_big.raycluster(groups)
    for group in cluster["spec"]["workerGroupSpecs"]:
        group["replicas"] = group["maxReplicas"] = 1
    return cluster


def reviews(url: str, obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the /mutate review, the /validate review of the object as the API server stores
    it); SystemExit when either is not admitted."""
    mutate = factories.admission_review(obj)
    answer = httpx.post(url + "/mutate", json=mutate, verify=False).json()["response"]
    if not answer["allowed"]:
        raise SystemExit(f"/mutate denied {obj['kind']}: {answer['status']['message']}")
    ops = orjson.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []
    validate = factories.admission_review(patches.apply(obj, ops))
    answer = httpx.post(url + "/validate", json=validate, verify=False).json()["response"]
    if not answer["allowed"]:
        raise SystemExit(f"/validate denied {obj['kind']}: {answer['status']['message']}")
    return mutate, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--all-gpu", action="store_true",
                        help="every container of the Pod names nvidia.com/gpu")
    args = parser.parse_args()
    objects = {"Pod, 300 containers": wide_pod(300, args.all_gpu),
               "RayCluster, 50 worker groups": raycluster(50)}
    with tempfile.TemporaryDirectory() as tmp, admission.bench_server(
            Path(tmp), config=ROOT / "examples" / "mlgate.yaml") as url:
        cases: dict[str, tuple[str, dict[str, Any]]] = {}
        for label, obj in objects.items():
            mutate, validate = reviews(url, obj)
            cases[f"mutate   {label}"] = ("/mutate", mutate)
            cases[f"validate {label}"] = ("/validate", validate)
        figures: dict[str, list[loadgen.Figures]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (route, review) in cases.items():
                figures[name].append(loadgen.run_wrk(url + route, review, args.connections,
                                                     args.duration, 1))
    print(f"wrk -t1 -c{args.connections}, {args.duration:g}s x {args.rounds} rounds (medians), "
          f"HTTPS, examples/mlgate.yaml, SQLite journal, JSON decision log, metrics")
    print(f"{'case':<40}{'KiB':>6}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  target")
    for name, (_route, review) in cases.items():
        fig = loadgen.median(figures[name])
        size = len(orjson.dumps(review)) / 1024
        print(f"{name:<40}{size:>6.0f}{fig.requests_per_second:>8.0f}{fig.p50_ms:>9.2f}"
              f"{fig.p99_ms:>9.2f}{fig.errors + fig.non_2xx:>8}  p99 <= {P99_TARGET_MS:g} ms")


if __name__ == "__main__":
    main()

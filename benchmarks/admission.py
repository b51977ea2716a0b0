"""Load test of /validate and /mutate against the floor, over HTTPS, with wrk.

    python benchmarks/admission.py [--duration 10] [--connections 32] [--rounds 3]

Two realistic reviews (a GPU training Pod and a 4-role PyTorchJob) go to /validate and
/mutate with the default policy set; in the same run, the same reviews go to /floor, a
route that only parses and answers allowed. Rounds alternate the routes so that machine
noise hits them alike; the figures are medians over rounds. Targets (issue 2): the
default policy set at >= 60% of the floor's throughput, p99 <= 10 ms at 32 connections.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import loadgen  # noqa: E402
from tests import factories  # noqa: E402
from webhook import certs, server  # noqa: E402

HERE = Path(__file__).resolve().parent


def gpu_pod() -> dict[str, Any]:
    c = factories.container(
        "trainer", image="registry.example.com/ml/llama-finetune:2.3.1",
        limits={"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "4"},
        env=[{"name": "NCCL_DEBUG", "value": "INFO"}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}])
    init = factories.container("fetch-weights", image="registry.example.com/ml/fetch:1.0",
                               limits={"cpu": "1", "memory": "1Gi"})
    spec = factories.pod_spec(c, initContainers=[init],
                              volumes=[{"name": "data", "persistentVolumeClaim": {
                                  "claimName": "datasets"}}])
    return factories.pod(spec, name="finetune-0", labels={"app": "finetune", "team": "nlp"})


def pytorchjob() -> dict[str, Any]:
    def template(role: str) -> dict[str, Any]:
        return {"metadata": {"labels": {"role": role}}, "spec": factories.pod_spec(
            factories.container("pytorch", image="registry.example.com/ml/resnet:1.4",
                                limits={"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "8"},
                                command=["torchrun", "train.py"]))}

    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "resnet-ddp", "namespace": "ml"},
            "spec": {"pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": template("master")},
                "Worker": {"replicas": 3, "template": template("worker")}}}}


@contextlib.contextmanager
def bench_server(workdir: Path, config: Path | None = None, bare: bool = False,
                 ) -> Iterator[str]:
    bundle = certs.generate()
    paths = certs.write(bundle, workdir / "certs")
    port = server.free_port()
    args = [sys.executable, str(HERE / "bench_server.py"), str(port),
            str(paths[certs.CERT_FILE]), str(paths[certs.KEY_FILE]),
            "-" if bare else str(workdir)]
    if config is not None:
        args.append(str(config))
    process = subprocess.Popen(args)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", verify=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("benchmark server did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(15)


def measure(url: str, cases: dict[str, tuple[str, dict[str, Any]]], rounds: int,
            duration: float, connections: int) -> dict[str, loadgen.Figures]:
    results: dict[str, list[loadgen.Figures]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (route, review) in cases.items():
            results[name].append(loadgen.run_wrk(url + route, review, connections, duration))
    return {name: loadgen.median(figures) for name, figures in results.items()}


def report(figures: dict[str, loadgen.Figures], floor_of: dict[str, str]) -> None:
    print(f"{'case':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'of floor':>10}{'errors':>8}")
    for name, fig in figures.items():
        floor = figures[floor_of[name]].requests_per_second
        print(f"{name:<28}{fig.requests_per_second:>10.0f}{fig.p50_ms:>9.2f}{fig.p99_ms:>9.2f}"
              f"{fig.requests_per_second / floor:>10.0%}{fig.errors + fig.non_2xx:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare", action="store_true",
                        help="journal and decision log off: the engine and policies alone")
    args = parser.parse_args()
    pod_review = factories.admission_review(gpu_pod())
    job_review = factories.admission_review(pytorchjob())
    cases = {
        "floor  Pod": ("/floor", pod_review),
        "validate Pod": ("/validate", pod_review),
        "mutate Pod": ("/mutate", pod_review),
        "floor  PyTorchJob": ("/floor", job_review),
        "validate PyTorchJob": ("/validate", job_review),
        "mutate PyTorchJob": ("/mutate", job_review),
    }
    floor_of = {name: ("floor  Pod" if "Pod" in name and "Job" not in name
                       else "floor  PyTorchJob") for name in cases}
    with tempfile.TemporaryDirectory() as tmp, bench_server(Path(tmp), bare=args.bare) as url:
        figures = measure(url, cases, args.rounds, args.duration, args.connections)
    setup = ("journal and decision log off" if args.bare
             else "as `mlgate serve` runs: SQLite journal, JSON decision log")
    print(f"wrk: {args.connections} connections, {args.duration:g}s x {args.rounds} rounds "
          f"(medians), one server process, default policies, {setup}")
    report(figures, floor_of)


if __name__ == "__main__":
    main()

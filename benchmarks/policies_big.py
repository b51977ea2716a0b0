"""Big objects through the whole policy library, against the plain pod, in-process.

    python benchmarks/policies_big.py [--runs 200]

A policy that is slow on big objects is a bug (quadratic scans over containers or pod
specs hide until someone submits a RayCluster with many worker groups). Three objects go
through `Engine.check` (mutate, apply the patch, validate), as `mlgate check` and the
webhook do, with every built-in policy that needs no registry or user rules enabled:

- plain: one GPU training Pod with one container (the reference);
- raycluster-50: a RayCluster with a head and 50 GPU worker groups;
- pod-100: one Pod with 100 containers.

Runs of the three cases are interleaved so machine noise hits them alike. Reported:
median and p99 per case in ms, and each as a ratio to the plain pod's figure. The big
objects carry 51 and 100 times the containers, so ratios near those factors mean linear
cost; far above them means a policy scans something quadratically. A per-policy table on
the big objects names the policy to look at.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import factories  # noqa: E402
from webhook import config, engine, kind_table, plugins, workloads  # noqa: E402

# Policies that talk to registries or need user-written rules are left out.
SKIPPED = {"image-signatures", "pin-image-digests", "cel"}
PARAMS: dict[str, dict[str, Any]] = {
    "shm-volume": {},
    "gpu-node-placement": {
        "nodeSelectors": {"nvidia.com/gpu": {"nvidia.com/gpu.present": "true"}},
        "products": [{"annotation": "mlgate.io/gpu-product", "nodeLabel": "nvidia.com/gpu.product",
                      "values": {"H100": ["NVIDIA-H100-80GB-HBM3"]}}]},
    "gpu-env": {"env": {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "NCCL_DEBUG": "WARN"}},
    "default-labels": {"queueNames": {"*": "default"}},
    "priority-class": {"classes": {"training": "ml-training", "other": "ml-default"}},
    "gpu-limits": {"maxPerContainer": 8, "maxPerPod": 8, "maxPerWorkload": 4096,
                   "allowed": ["nvidia.com/*"]},
    "allowed-registries": {"registries": ["registry.example.com", "docker.io/library/*"]},
    "disallow-latest-tag": {},
    "required-labels": {"labels": [{"key": "team"}], "podTemplates": True},
    "require-probes": {"kinds": ["Pod", "RayCluster"]},
}


def _container(index: int) -> dict[str, Any]:
    return factories.container(
        f"c{index}", image=f"registry.example.com/ml/train-{index % 7}:1.{index % 5}",
        limits={"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1" if index < 8 else "0"},
        requests={"cpu": "1", "memory": "2Gi"},
        env=[{"name": "RANK", "value": str(index)}],
        ports=[{"containerPort": 8000 + index}],
        readinessProbe={"tcpSocket": {"port": 8000 + index}})


def plain_pod() -> dict[str, Any]:
    return factories.pod(factories.pod_spec(_container(0)), labels={"team": "nlp"})


def big_pod(containers: int = 100) -> dict[str, Any]:
    return factories.pod(factories.pod_spec(*(_container(i) for i in range(containers))),
                         name="wide", labels={"team": "nlp"})


def raycluster(groups: int = 50) -> dict[str, Any]:
    def template(index: int) -> dict[str, Any]:
        return {"metadata": {"labels": {"team": "nlp"},
                             "annotations": {"mlgate.io/gpu-product": "H100"}},
                "spec": factories.pod_spec(_container(index))}

    return {"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "sweep", "namespace": "ml", "labels": {"team": "nlp"}},
            "spec": {"headGroupSpec": {"rayStartParams": {}, "template": template(0)},
                     "workerGroupSpecs": [
                         {"groupName": f"g{i}", "replicas": 2, "maxReplicas": 4,
                          "rayStartParams": {}, "template": template(i % 8)}
                         for i in range(groups)]}}


def library_config() -> tuple[config.Config, list[str]]:
    catalogue = plugins.discover([])
    enabled = sorted(name for name in catalogue.policies if name not in SKIPPED)
    policies = {name: {"mode": "enforce", "params": PARAMS.get(name, {})} for name in enabled}
    return config.from_mapping({"policies": policies}, environ={}), enabled


def measure(eng: engine.Engine, cases: dict[str, dict[str, Any]], runs: int,
            ) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}

    async def go() -> None:
        for _ in range(runs):
            for name, obj in cases.items():
                started = time.perf_counter()
                mutated, validated, _ = await eng.check(copy.deepcopy(obj), "ml")
                times[name].append(time.perf_counter() - started)
                if validated.findings or mutated.findings:  # a benchmark of denials is moot
                    raise SystemExit(f"{name}: {[f.message for f in validated.findings][:3]}")

    asyncio.run(go())
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def per_policy(eng: engine.Engine, obj: dict[str, Any], runs: int) -> dict[str, float]:
    """Median ms of each policy's own method on `obj`, outside the engine."""
    medians = {}
    for active in eng.active:
        samples = []
        for _ in range(runs):
            view = kind_table.view(copy.deepcopy(obj), context=workloads.Context(namespace="ml"))
            policy = active.policy
            method = policy.mutate if active.phase == "mutate" else policy.validate  # type: ignore[union-attr]
            started = time.perf_counter()
            result = method(view)
            if result is not None and active.phase == "validate":
                list(result)
            samples.append(time.perf_counter() - started)
        medians[active.name] = statistics.median(samples) * 1000
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    cfg, enabled = library_config()
    eng = engine.Engine.build(cfg)
    cases = {"plain": plain_pod(), "raycluster-50": raycluster(), "pod-100": big_pod()}
    measure(eng, cases, 10)  # warm up imports and caches
    gc.collect()
    gc.freeze()  # as the server does after startup (webhook/app.py)
    times = measure(eng, cases, args.runs)
    base_median, base_p99 = statistics.median(times["plain"]), p99(times["plain"])
    print(f"policies enabled ({len(enabled)}): {', '.join(enabled)}")
    print(f"{args.runs} runs per case, interleaved; Engine.check = mutate + validate")
    print(f"{'case':<15}{'median ms':>11}{'p99 ms':>10}{'median x':>10}{'p99 x':>8}")
    for name, samples in times.items():
        median, tail = statistics.median(samples), p99(samples)
        print(f"{name:<15}{median * 1000:>11.2f}{tail * 1000:>10.2f}"
              f"{median / base_median:>10.1f}{tail / base_p99:>8.1f}")
    print("\nper policy, median ms on the big objects (policy method alone):")
    big = {name: per_policy(eng, cases[name], max(args.runs // 10, 5))
           for name in ("raycluster-50", "pod-100")}
    print(f"{'policy':<22}{'raycluster-50':>15}{'pod-100':>10}")
    for name in big["pod-100"]:
        print(f"{name:<22}{big['raycluster-50'][name]:>15.3f}{big['pod-100'][name]:>10.3f}")


if __name__ == "__main__":
    main()

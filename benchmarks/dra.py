"""The cost of following DRA claims: a claim-template pod against the same pod with
`nvidia.com/gpu`, in-process through `Engine.evaluate` (/mutate then /validate).

    python benchmarks/dra.py [--runs 2000]

The claim source is warm (a `dra.Manifests` index, the same dict lookup the server's
`claimcache.ClaimCache` does), so the difference is the model's cost: finding the pod's
claims, parsing the template's requests and mapping the device class, once per policy
that asks. Every accelerator policy is on. Runs are interleaved so machine noise hits
both alike; reported: p50 and p99 per case in ms and the p50 difference (target: at most
+0.1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import factories as f  # noqa: E402
from webhook import admission, config, dra, engine  # noqa: E402

POLICIES: dict[str, Any] = {
    "gpu-tolerations": {}, "default-resources": {}, "require-limits": {},
    "shm-volume": {}, "gpu-env": {"params": {"env": {"NCCL_DEBUG": "WARN"}}},
    "gpu-node-placement": {"params": {"nodeSelectors": {
        "nvidia.com/gpu": {"nvidia.com/gpu.present": "true"}}}},
    "gpu-limits": {"params": {"maxPerPod": 8, "maxPerContainer": 8}},
}
TEMPLATE = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": "two", "namespace": "ml"},
            "spec": {"spec": {"devices": {"requests": [
                {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                            "count": 2}}]}}}}


def pods() -> dict[str, dict[str, Any]]:
    limits = {"cpu": "4", "memory": "16Gi"}
    classic = f.pod(f.pod_spec(f.container(limits={**limits, "nvidia.com/gpu": "2"})))
    claimed = f.pod(f.pod_spec(f.container(limits=limits), resourceClaims=[
        {"name": "g", "resourceClaimTemplateName": "two"}]))
    claimed["spec"]["containers"][0]["resources"]["claims"] = [{"name": "g"}]
    return {"nvidia.com/gpu": classic, "dra claim": claimed}


async def once(eng: engine.Engine, obj: dict[str, Any], source: dra.Source) -> float:
    request = admission.synthetic_request(obj, user="bench", uid="bench", namespace="ml")
    started = time.perf_counter()
    for phase in (engine.MUTATE, engine.VALIDATE):
        decision = await eng.evaluate(request, phase, source)
        assert decision.allowed and not decision.warnings, decision.message
    return time.perf_counter() - started


async def main(runs: int) -> None:
    eng = engine.Engine.build(config.from_mapping({"policies": POLICIES}, environ={}))
    source = dra.Manifests([TEMPLATE])
    cases = pods()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for index in range(runs + 100):
        for name, obj in cases.items():
            elapsed = await once(eng, obj, source)
            if index >= 100:  # warm-up
                times[name].append(elapsed * 1000)
    for name, values in times.items():
        values.sort()
        print(f"{name:16} p50 {statistics.median(values):.3f} ms   "
              f"p99 {values[int(len(values) * 0.99)]:.3f} ms")
    delta = statistics.median(times["dra claim"]) - statistics.median(times["nvidia.com/gpu"])
    print(f"p50 difference: {delta:+.3f} ms (target <= +0.100 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    asyncio.run(main(parser.parse_args().runs))

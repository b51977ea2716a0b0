"""The cluster scan at scale: 10,000 workloads in the real kube-apiserver.

    python benchmarks/scan_scale.py [--objects 10000] [--clients 8]

Starts the control plane of the end-to-end tests, stores a mix of Pods (60%), Deployments
(30%) and PyTorchJobs (10%, with the CRD from ../shared/crds; Pods instead where absent)
across 20 namespaces, then runs `mlgate serve` with the example policy library
(examples/mlgate.yaml) twice, as the chart's ServiceAccount:

- idle: the scan off; RSS after start-up and a little admission traffic;
- scan: the scan on (it starts at start-up); RSS sampled every 50 ms until the scan's log
  line, and the scan's duration from the server's own log.

Targets (issue 11): a full scan in <= 60 s; peak RSS during the scan within 150 MB of the
idle RSS (one page in memory at a time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import apiserver  # noqa: E402
from tests.e2e import cluster, controlplane  # noqa: E402

NAMESPACES = 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def deployment(name: str) -> dict[str, Any]:
    template = apiserver.pod(name)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": template["spec"]}}}


def store_workloads(plane: controlplane.ControlPlane, total: int, clients: int,
                    jobs: bool) -> dict[str, int]:
    counts = {"Pod": 0, "Deployment": 0, "PyTorchJob": 0}
    per_namespace = total // NAMESPACES
    for n in range(NAMESPACES):
        namespace = plane.namespace(f"scale-{n}")
        deployments = per_namespace * 3 // 10
        pytorchjobs = per_namespace // 10 if jobs else 0
        pods = per_namespace - deployments - pytorchjobs
        apiserver.create_all(plane, f"/api/v1/namespaces/{namespace}/pods",
                             [apiserver.pod(f"p{i}") for i in range(pods)], clients)
        apiserver.create_all(plane, f"/apis/apps/v1/namespaces/{namespace}/deployments",
                             [deployment(f"d{i}") for i in range(deployments)], clients)
        if pytorchjobs:
            apiserver.create_all(
                plane, f"/apis/kubeflow.org/v1/namespaces/{namespace}/pytorchjobs",
                [apiserver.pytorchjob(f"j{i}") for i in range(pytorchjobs)], clients)
        counts["Pod"] += pods
        counts["Deployment"] += deployments
        counts["PyTorchJob"] += pytorchjobs
    return counts


def log_time(line: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


def log_lines(gate: cluster.Mlgate) -> list[dict[str, Any]]:
    lines = []
    for text in gate.output().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


def configure(gate: cluster.Mlgate, scan: bool) -> None:
    config = yaml.safe_load((ROOT / "examples" / "mlgate.yaml").read_text())
    config["audit"] = {"kubernetesAuth": True, "scan": {
        "enabled": scan, "interval": "1h", "kubeconfig": str(gate.workdir / "sa-kubeconfig")}}
    gate.config_file.write_text(yaml.safe_dump(config))


def idle_rss(gate: cluster.Mlgate) -> float:
    configure(gate, scan=False)
    gate.start()
    try:
        with gate.client() as client:  # warm up the admission path as a served process is
            for _ in range(200):
                client.get("/readyz")
        time.sleep(2)
        assert gate.process is not None
        return rss_mb(gate.process.pid)
    finally:
        gate.stop()


def scan_run(gate: cluster.Mlgate, timeout: float = 600) -> tuple[float, float, str]:
    """(seconds the scan took, peak RSS MB, the scan's log line)."""
    configure(gate, scan=True)
    gate.log.write_text("")
    gate.start()
    assert gate.process is not None
    peak = rss_mb(gate.process.pid)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(gate.process.pid))
            lines = log_lines(gate)
            done = [line for line in lines if line.get("message", "").startswith("scan: ")
                    and " objects in " in line.get("message", "")]
            if done:
                started = [line for line in lines
                           if "Application startup complete" in line.get("message", "")]
                seconds = log_time(done[0]) - log_time(started[0])
                return seconds, peak, done[0]["message"]
            time.sleep(0.05)
        raise RuntimeError(f"no scan result in {timeout} s:\n{gate.output()[-3000:]}")
    finally:
        gate.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlgate-scan-") as tmp, \
            controlplane.running(Path(tmp) / "plane") as plane:
        gate = cluster.install(plane, Path(tmp) / "mlgate")
        cluster.token_kubeconfig(plane, gate.workdir / "sa-kubeconfig",
                                 cluster.token(plane, gate.release, gate.namespace))
        for kind in apiserver.WEBHOOK_KINDS:  # storing the objects is not what is measured
            plane.kubectl("delete", kind, f"{gate.release}-{gate.namespace}")
        jobs = apiserver.PYTORCHJOB_CRD.exists()
        if jobs:
            cluster.install_crds(plane, [apiserver.PYTORCHJOB_CRD])
        else:
            print(f"PyTorchJobs left out (Pods instead): {apiserver.PYTORCHJOB_CRD} is absent")
        started = time.monotonic()
        counts = store_workloads(plane, args.objects, args.clients, jobs)
        print(f"stored {counts} in {time.monotonic() - started:.0f} s")
        idle = idle_rss(gate)
        seconds, peak, line = scan_run(gate)
    grown = peak - idle
    print(f"\nscan of {sum(counts.values())} workloads with examples/mlgate.yaml: {line}")
    print(f"  duration      {seconds:7.1f} s   (target <= 60 s: "
          f"{'met' if seconds <= 60 else 'NOT met'})")
    print(f"  idle RSS      {idle:7.1f} MB")
    print(f"  peak RSS      {peak:7.1f} MB   (+{grown:.1f} MB; target <= +150 MB: "
          f"{'met' if grown <= 150 else 'NOT met'})")
    return 0 if seconds <= 60 and grown <= 150 else 1


if __name__ == "__main__":
    sys.exit(main())

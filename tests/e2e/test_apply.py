"""`kubectl apply` and `kubectl apply --dry-run=server` through the real API server."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.e2e.cluster import Mlgate

GPU = "nvidia.com/gpu"


def pod(name: str, resources: dict[str, Any], image: str = "pytorch/pytorch:2.3.0-cuda12.1",
        ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "trainer", "image": image,
                                     "resources": resources}]}}


LIMITED_GPU = {"limits": {"cpu": "4", "memory": "16Gi", GPU: "1"}}
NO_LIMITS = {"requests": {"cpu": "1"}}


def apply(gate: Mlgate, namespace: str, obj: dict[str, Any], *args: str, check: bool = False):
    return gate.plane.kubectl("apply", "-n", namespace, "-f", "-", *args,
                              input=yaml.safe_dump(obj), check=check)


def stored(gate: Mlgate, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(gate.plane.kubectl("get", kind, name, "-n", namespace,
                                         "-o", "json").stdout)


def test_a_gpu_pod_is_stored_with_the_toleration_and_default_requests(gate: Mlgate,
                                                                       namespace: str) -> None:
    result = apply(gate, namespace, pod("train", LIMITED_GPU), check=True)
    assert "pod/train created" in result.stdout
    spec = stored(gate, namespace, "pod", "train")["spec"]
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    requests = spec["containers"][0]["resources"]["requests"]
    # default-resources: a GPU request equal to the limit, cpu/memory requests from limits
    assert requests[GPU] == "1"
    assert set(requests) >= {"cpu", "memory"}


def test_a_pod_without_limits_is_refused_with_mlgate_s_message(gate: Mlgate,
                                                              namespace: str) -> None:
    result = apply(gate, namespace, pod("nolimits", NO_LIMITS))
    assert result.returncode == 1
    err = result.stderr
    assert 'admission webhook "validate.mlgate.io" denied the request' in err
    assert "[require-limits]" in err and f"Pod {namespace}/nolimits" in err
    assert 'container "trainer"' in err
    assert "set resources.limits.cpu" in err and "set resources.limits.memory" in err
    missing = gate.plane.kubectl("get", "pod", "nolimits", "-n", namespace, check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_a_warn_mode_finding_is_a_kubectl_warning(gate: Mlgate, namespace: str) -> None:
    config = yaml.safe_load(gate.config_file.read_text())
    config.setdefault("policies", {}).setdefault("require-limits", {})["mode"] = "warn"
    gate.configure(config)
    result = apply(gate, namespace, pod("warned", NO_LIMITS), check=True)
    assert "pod/warned created" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert any("[require-limits]" in line and "resources.limits.memory" in line
               for line in warnings), result.stderr


def test_server_dry_run_shows_the_mutated_object_and_stores_nothing(gate: Mlgate,
                                                                     namespace: str) -> None:
    result = apply(gate, namespace, pod("dry", LIMITED_GPU), "--dry-run=server", "-o", "yaml",
                   check=True)
    shown = yaml.safe_load(result.stdout)
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in \
        shown["spec"]["tolerations"]
    assert shown["spec"]["containers"][0]["resources"]["requests"][GPU] == "1"
    missing = gate.plane.kubectl("get", "pod", "dry", "-n", namespace, check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_server_dry_run_shows_the_denial(gate: Mlgate, namespace: str) -> None:
    result = apply(gate, namespace, pod("drydenied", NO_LIMITS), "--dry-run=server")
    assert result.returncode == 1
    assert "[require-limits]" in result.stderr and "set resources.limits.cpu" in result.stderr
    missing = gate.plane.kubectl("get", "pod", "drydenied", "-n", namespace, check=False)
    assert missing.returncode == 1

"""Every accelerator policy sees GPUs asked for through DRA claims, in every kind."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from policies.cel import Cel
from policies.default_resources import DefaultResources
from policies.gpu_env import GpuEnv
from policies.gpu_limits import GpuLimits
from policies.gpu_node_placement import GpuNodePlacement
from policies.gpu_tolerations import GpuTolerations
from policies.require_limits import RequireLimits
from policies.shm_volume import ShmVolume
from tests import factories as f
from tests.fixtures.policies import kinds
from tests.unit.test_accelerators import device, template, using
from webhook import admission, config, dra, engine

JSON = dict[str, Any]
TWO = template("double-gpu", {"name": "gpu", **device("v1", "gpu.nvidia.com", 2)})
CLAIMS = [{"name": "gpus", "resourceClaimTemplateName": "double-gpu"}]


def _spec(*containers: JSON) -> JSON:
    return f.pod_spec(*(containers or (using("train", "gpus"),)), resourceClaims=CLAIMS)


def _pods(obj: JSON) -> list[JSON]:
    return [pod.spec for pod in kinds.view(obj).pods]


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_gpu_tolerations_tolerates_the_taint_of_the_claimed_class(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), _spec())
    assert all("tolerations" not in spec for spec in _pods(kinds.mutate(GpuTolerations, {}, obj)))
    mutated = kinds.mutate(GpuTolerations, {}, obj, claims=[TWO])
    for spec in _pods(mutated):
        assert spec["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_gpu_limits_counts_claims_per_pod_and_per_workload(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), _spec(), replicas=3)
    found = kinds.violations(GpuLimits, {"maxPerPod": 1}, obj, claims=[TWO])
    assert found, "a claim template of 2 GPUs passes a cap of 1 per pod"
    assert all("asks for 2 accelerators (through pod claim 'gpus' (claim template "
               "double-gpu), request 'gpu': 2 x gpu.nvidia.com); at most 1 are allowed "
               "per pod in namespace ml" in v.what for v in found)
    total = 2 * kinds.view(obj).total_pods
    assert kinds.violations(GpuLimits, {"maxPerWorkload": total}, obj, claims=[TWO]) == []
    found = kinds.violations(GpuLimits, {"maxPerWorkload": total - 1}, obj, claims=[TWO])
    assert [v.path for v in found] == ["/spec"]
    assert f"asks for {total} accelerators in total" in found[0].what


def test_gpu_limits_per_container_counts_the_claims_it_uses() -> None:
    obj = f.pod(spec=_spec(using("a", "gpus", limits={"nvidia.com/gpu": 1}), f.container("b")))
    found = kinds.violations(GpuLimits, {"maxPerContainer": 2}, obj, claims=[TWO])
    assert [v.container for v in found] == ["a"]
    assert "asks for 3 accelerators (nvidia.com/gpu) (through pod claim 'gpus'" in found[0].what


def test_gpu_limits_a_shared_claim_counts_once_per_pod() -> None:
    obj = f.pod(spec=_spec(using("a", "gpus"), using("b", "gpus")))
    assert kinds.violations(GpuLimits, {"maxPerPod": 2}, obj, claims=[TWO]) == []


def test_gpu_limits_allowed_names_apply_to_device_classes() -> None:
    mig = template("slice", {"name": "s", **device("v1", "mig.nvidia.com", 1)})
    obj = f.pod(spec=f.pod_spec(using("c", "m"), resourceClaims=[
        {"name": "m", "resourceClaimTemplateName": "slice"}]))
    params = {"namespaces": {"ml": {"allowed": ["nvidia.com/gpu"]}}}
    found = kinds.violations(GpuLimits, params, obj, claims=[mig])
    assert len(found) == 1
    assert found[0].path == "/spec/resourceClaims/0"
    assert ("pod claim 'm' (claim template slice), request 's': 1 x mig.nvidia.com asks for "
            "nvidia.com/mig, which is not allowed in namespace ml") in found[0].what


def test_gpu_limits_allocation_mode_all_is_denied_where_a_cap_applies() -> None:
    every = template("double-gpu", {"name": "gpu", **device("v1", "gpu.nvidia.com", mode="All")})
    obj = f.pod(spec=_spec())
    assert kinds.violations(GpuLimits, {}, obj, claims=[every]) == []
    found = kinds.violations(GpuLimits, {"maxPerPod": 4}, obj, claims=[every])
    assert len(found) == 1
    assert "every matching device on the node (allocationMode: All)" in found[0].what
    assert "4 per pod" in found[0].what and "dra.countAll" in found[0].fix
    found = kinds.violations(GpuLimits, {"maxPerPod": 4}, obj, claims=[every],
                             dra_settings={"countAll": 8})
    assert ["asks for 8 accelerators" in v.what for v in found] == [True]


def test_default_resources_uses_the_accelerator_defaults_for_claim_pods() -> None:
    params = {"accelerator": {"requests": {"cpu": "4", "memory": "32Gi"}}}
    obj = f.pod(spec=_spec())
    mutated = kinds.mutate(DefaultResources, params, obj, claims=[TWO])
    assert mutated["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "4", "memory": "32Gi"}
    mutated = kinds.mutate(DefaultResources, params, obj)
    assert mutated["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"


def test_require_limits_asks_no_request_limit_pair_of_a_claim() -> None:
    c = using("train", "gpus", limits={"cpu": "1", "memory": "1Gi"})
    found = kinds.violations(RequireLimits, {}, f.pod(spec=_spec(c)), claims=[TWO])
    assert found == []


def test_shm_env_and_placement_reach_claim_pods_and_containers() -> None:
    obj = f.pod(spec=_spec(using("train", "gpus"), f.container("cpu-sidecar")))
    shm = kinds.mutate(ShmVolume, {}, obj, claims=[TWO])
    assert [v["name"] for v in shm["spec"]["volumes"]] == ["dshm"]
    env = kinds.mutate(GpuEnv, {"env": {"NCCL_DEBUG": "INFO"}}, obj, claims=[TWO])
    assert env["spec"]["containers"][0]["env"] == [{"name": "NCCL_DEBUG", "value": "INFO"}]
    assert "env" not in env["spec"]["containers"][1]
    placed = kinds.mutate(GpuNodePlacement, {"nodeSelectors": {
        "nvidia.com/gpu": {"nvidia.com/gpu.present": "true"}}}, obj, claims=[TWO])
    assert placed["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_cel_sees_an_accelerators_map_per_pod_and_per_container() -> None:
    rules = [{"name": "pod", "scope": "pod",
              "expression": "!('nvidia.com/gpu' in accelerators) || "
                            "accelerators['nvidia.com/gpu'] <= 1",
              "message": "one GPU per pod"},
             {"name": "sidecar", "scope": "container",
              "expression": "size(accelerators) == 0 || container.name == 'train'"}]
    obj = f.pod(spec=_spec(using("train", "gpus"), using("helper", "gpus")))
    found = kinds.violations(Cel, {"rules": rules}, obj, claims=[TWO])
    assert [(v.what, v.container) for v in found] == [
        ("rule 'pod': one GPU per pod", None),
        ("rule 'sidecar': failed expression: " + rules[1]["expression"], "helper")]


def _engine(unresolved: str, **policies: JSON) -> engine.Engine:
    settings = {name: {"mode": "off"} for name in config.DEFAULT_POLICIES}
    settings.update(policies)
    return engine.Engine.build(config.from_mapping(
        {"policies": settings, "dra": {"unresolved": unresolved}}, environ={}))


@pytest.mark.parametrize(("unresolved", "allowed"), [("warn", True), ("deny", False)])
def test_a_claim_template_that_cannot_be_found_follows_the_failure_mode(
        unresolved: str, allowed: bool) -> None:
    eng = _engine(unresolved, **{"gpu-tolerations": {}})
    obj = f.pod(spec=_spec())
    mutated, validated, _ = asyncio.run(eng.check(obj, "ml"))
    assert validated.allowed is allowed
    text = ("[dra] Pod ml/train /spec: pod claim 'gpus' (claim template double-gpu) is not in "
            "the manifests given, so its devices cannot be counted (create the "
            "ResourceClaimTemplate double-gpu before the pod, or give its manifest to mlgate "
            "check too)")
    assert text in (validated.warnings if allowed else [validated.message])
    assert mutated.patch == []
    mutated, validated, _ = asyncio.run(eng.check(obj, "ml", dra.Manifests([TWO], "ml")))
    assert validated.allowed and validated.warnings == []
    assert mutated.mutated_by == ["gpu-tolerations"]


def test_a_server_without_a_claim_cache_says_so() -> None:
    eng = _engine("warn")
    _, validated, _ = asyncio.run(eng.check(f.pod(spec=_spec()), "ml", dra.Nothing()))
    assert validated.allowed
    assert "is not in mlgate (no claim cache is configured)" in validated.warnings[0]


def test_an_update_of_a_pod_whose_template_is_gone_is_not_denied() -> None:
    eng = _engine("deny")
    obj = f.pod(spec=_spec())
    labelled = {**obj, "metadata": {**obj["metadata"], "labels": {"done": "yes"}}}
    review = f.admission_review(labelled, operation="UPDATE", old=obj)
    decision = asyncio.run(eng.evaluate(admission.parse(orjson.dumps(review)), "validate"))
    assert decision.allowed
    assert "[already present before this update]" in decision.warnings[0]
    created = asyncio.run(eng.evaluate(admission.parse(orjson.dumps(f.admission_review(obj))),
                                       "validate"))
    assert not created.allowed and "claim template double-gpu" in created.message

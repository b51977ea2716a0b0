"""gpu-node-placement: accelerator pods get node labels; user placement is merged, not replaced."""

from __future__ import annotations

import copy

import pytest

from policies.gpu_node_placement import GpuNodePlacement
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

PARAMS = {
    "nodeSelectors": {"nvidia.com/gpu": {"nvidia.com/gpu.present": "true"},
                      "nvidia.com/mig-*": {"nvidia.com/mig.capable": "true"}},
    "products": [{"annotation": "mlgate.io/gpu-product", "nodeLabel": "nvidia.com/gpu.product",
                  "values": {"H100": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]}}],
}
H100 = {"mlgate.io/gpu-product": "H100"}
PRODUCT_TERM = {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                      "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]}]}


def _required(spec: dict) -> list:
    return spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_accelerator_pods_of_every_kind_get_selector_and_affinity(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container(limits=f.GPU)),
                     template_annotations=H100)
    result = kinds.mutate(GpuNodePlacement, PARAMS, obj)
    pods = kinds.view(result).pods
    assert pods
    for pod in pods:
        assert pod.spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert _required(pod.spec) == [PRODUCT_TERM]
    assert kinds.mutate(GpuNodePlacement, PARAMS, result) == result


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_pods_without_accelerators_are_untouched(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container(limits=f.LIMITED)),
                     template_annotations=H100)
    assert kinds.mutate(GpuNodePlacement, PARAMS, obj) == obj


def test_user_node_selector_values_are_never_overwritten() -> None:
    spec = f.pod_spec(f.container(limits=f.GPU),
                      nodeSelector={"nvidia.com/gpu.present": "yes", "pool": "a"})
    result = kinds.mutate(GpuNodePlacement, PARAMS, f.pod(spec))
    assert result["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "yes", "pool": "a"}


def test_the_requirement_is_anded_into_every_user_term_and_other_affinity_is_kept() -> None:
    user_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                       "values": ["A100"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            ]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [
                    {"key": "fast", "operator": "Exists"}]}}],
        },
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
    }
    obj = f.pod(f.pod_spec(f.container(limits=f.GPU), affinity=copy.deepcopy(user_affinity)))
    obj["metadata"]["annotations"] = {"mlgate.io/gpu-product": "H100, L4"}
    result = kinds.mutate(GpuNodePlacement, PARAMS, obj)
    affinity = result["spec"]["affinity"]
    terms = _required(result["spec"])
    wanted = {"key": "nvidia.com/gpu.product", "operator": "In",
              "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "L4"]}
    assert terms[0]["matchExpressions"] == [
        {"key": "zone", "operator": "In", "values": ["a"]}, wanted]
    assert terms[1] == user_affinity["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][1]  # the user's
    assert terms[2]["matchFields"] and terms[2]["matchExpressions"] == [wanted]
    assert affinity["podAntiAffinity"] == user_affinity["podAntiAffinity"]
    assert (affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            == user_affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"])
    assert kinds.mutate(GpuNodePlacement, PARAMS, result) == result


def test_annotation_on_the_object_applies_to_its_templates_and_only_matching_roles() -> None:
    job = kinds.wrap(kinds.kind_spec("ray.io/RayCluster"), f.pod_spec(f.container()))
    job["metadata"]["annotations"] = H100
    worker = job["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    worker["containers"][0]["resources"] = {"limits": {"nvidia.com/mig-1g.10gb": 1}}
    result = kinds.mutate(GpuNodePlacement, PARAMS, job)
    head = result["spec"]["headGroupSpec"]["template"]["spec"]
    worker = result["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert "nodeSelector" not in head and "affinity" not in head  # CPU head untouched
    assert worker["nodeSelector"] == {"nvidia.com/mig.capable": "true"}
    assert _required(worker) == [PRODUCT_TERM]


def test_defaults_change_nothing() -> None:
    obj = f.pod(f.pod_spec(f.container(limits=f.GPU)))
    obj["metadata"]["annotations"] = H100
    assert kinds.mutate(GpuNodePlacement, {}, obj) == obj


def test_unquoted_boolean_label_values_are_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match=r"gpu-node-placement\.params\.nodeSelectors"):
        kinds.check({"gpu-node-placement": {"params": {
            "nodeSelectors": {"nvidia.com/gpu": {"nvidia.com/gpu.present": True}}}}}, f.pod())


@pytest.mark.corpus
def test_corpus_placement_keeps_every_user_setting(shared_dir) -> None:
    changed = 0
    for where, obj in kinds.corpus(shared_dir):
        result = kinds.mutate(GpuNodePlacement, PARAMS, obj)
        assert kinds.mutate(GpuNodePlacement, PARAMS, result) == result, where
        for old_pod, pod in zip(kinds.view(obj).pods, kinds.view(result).pods, strict=True):
            old_selector = old_pod.spec.get("nodeSelector") or {}
            for key, value in old_selector.items():
                assert pod.spec["nodeSelector"][key] == value, where
            if not old_pod.resources_matching(["nvidia.com/gpu", "nvidia.com/mig-*"]):
                assert old_pod.spec == pod.spec, where
        changed += result != obj
    assert changed >= 10

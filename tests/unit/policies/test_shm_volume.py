"""shm-volume: a memory-backed /dev/shm for accelerator pods, on every kind, never twice."""

from __future__ import annotations

import copy

import pytest

from policies.shm_volume import ShmVolume
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors, workloads

GPU_POD = f.pod_spec(
    f.container("trainer", requests={**f.GPU, "memory": "8Gi"}, limits={**f.GPU, "memory": "8Gi"}),
    f.container("logger", limits={"memory": "8Gi"}),
    initContainers=[f.container("fetch")])


def _shm_mounts(container: workloads.ContainerView) -> list[dict[str, str]]:
    return [m for m in container.data.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_every_accelerator_pod_of_every_kind_gets_dev_shm(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), GPU_POD)
    result = kinds.mutate(ShmVolume, {}, obj)
    pods = kinds.view(result).pods
    assert pods
    for pod in pods:
        assert pod.spec["volumes"] == [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
        by_kind = {c.name: _shm_mounts(c) for c in pod.containers}
        # Regular containers (both), not the init container.
        assert by_kind == {"trainer": [{"name": "dshm", "mountPath": "/dev/shm"}],
                           "logger": [{"name": "dshm", "mountPath": "/dev/shm"}],
                           "fetch": []}
    assert kinds.mutate(ShmVolume, {}, result) == result  # idempotent


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_pods_without_accelerators_are_untouched(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container(limits=f.LIMITED)))
    assert kinds.mutate(ShmVolume, {}, obj) == obj


def test_an_existing_shm_mount_is_reused_never_duplicated() -> None:
    spec = f.pod_spec(
        f.container("a", limits=f.GPU, volumeMounts=[{"name": "shm", "mountPath": "/dev/shm/"}]),
        f.container("b"),
        volumes=[{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}])
    result = kinds.mutate(ShmVolume, {}, f.pod(spec))
    assert result["spec"]["volumes"] == spec["volumes"]  # the user's volume, unchanged
    assert result["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "shm", "mountPath": "/dev/shm/"}]
    assert result["spec"]["containers"][1]["volumeMounts"] == [
        {"name": "shm", "mountPath": "/dev/shm"}]


def test_a_declared_but_unmounted_memory_volume_is_reused() -> None:
    spec = f.pod_spec(f.container(limits=f.GPU),
                      volumes=[{"name": "dshm", "emptyDir": {"medium": "Memory"}}])
    result = kinds.mutate(ShmVolume, {}, f.pod(spec))
    assert result["spec"]["volumes"] == spec["volumes"]
    assert result["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "dshm", "mountPath": "/dev/shm"}]


def test_a_volume_name_taken_by_something_else_gets_a_fresh_name() -> None:
    spec = f.pod_spec(f.container(limits=f.GPU), volumes=[{"name": "dshm", "configMap": {
        "name": "cfg"}}])
    result = kinds.mutate(ShmVolume, {"sizeLimit": "2Gi"}, f.pod(spec))
    assert result["spec"]["volumes"][1] == {"name": "dshm-1", "emptyDir": {
        "medium": "Memory", "sizeLimit": "2Gi"}}
    assert kinds.mutate(ShmVolume, {"sizeLimit": "2Gi"}, result) == result


@pytest.mark.parametrize(("limits", "fraction", "expected"), [
    (["16Gi"], 0.5, "8Gi"),
    (["3Gi", "1Gi"], 0.25, "1Gi"),
    (["1000M"], 0.5, "476Mi"),  # 500 MB, rounded down to whole Mi
    ([None], 0.5, None),        # a container without a limit: the pod has none
])
def test_size_limit_is_a_fraction_of_the_pod_memory_limit(
        limits: list[str | None], fraction: float, expected: str | None) -> None:
    containers = [f.container(f"c{i}", limits={**f.GPU, **({"memory": m} if m else {})})
                  for i, m in enumerate(limits)]
    result = kinds.mutate(ShmVolume, {"memoryFraction": fraction}, f.pod(f.pod_spec(*containers)))
    empty_dir = result["spec"]["volumes"][0]["emptyDir"]
    assert empty_dir.get("sizeLimit") == expected


def test_selector_adds_shm_to_cpu_pods_that_match() -> None:
    params = {"selector": {"matchLabels": {"mlgate.io/shm": "true"}}}
    matching = kinds.wrap(kinds.kind_spec("batch/Job"), f.pod_spec(f.container()),
                          template_labels={"mlgate.io/shm": "true"})
    other = kinds.wrap(kinds.kind_spec("batch/Job"), f.pod_spec(f.container()))
    assert "volumes" in kinds.mutate(ShmVolume, params, matching)["spec"]["template"]["spec"]
    assert kinds.mutate(ShmVolume, params, other) == other


def test_through_the_engine_the_patch_adds_and_a_second_pass_is_empty() -> None:
    obj = kinds.wrap(kinds.kind_spec("kubeflow.org/PyTorchJob"), GPU_POD)
    mutated, validated, result = kinds.check({"shm-volume": {}}, obj)
    assert mutated.mutated_by == ["shm-volume"]
    assert {op["path"] for op in mutated.patch} == {
        "/spec/pytorchReplicaSpecs/Worker/template/spec/volumes",
        "/spec/pytorchReplicaSpecs/Worker/template/spec/containers/0/volumeMounts",
        "/spec/pytorchReplicaSpecs/Worker/template/spec/containers/1/volumeMounts"}
    again, _, _ = kinds.check({"shm-volume": {}}, result)
    assert again.patch == []


def test_bad_params_are_config_errors_naming_the_key() -> None:
    with pytest.raises(errors.ConfigError, match=r"shm-volume.*sizeLimit: 'lots'"):
        kinds.check({"shm-volume": {"params": {"sizeLimit": "lots"}}}, f.pod())
    with pytest.raises(errors.ConfigError, match=r"containerKinds.*ephemeral"):
        kinds.check({"shm-volume": {"params": {"containerKinds": ["ephemeral"]}}}, f.pod())


@pytest.mark.corpus
def test_corpus_accelerator_workloads_get_exactly_one_shm_per_container(shared_dir) -> None:
    changed = 0
    for where, obj in kinds.corpus(shared_dir):
        original = copy.deepcopy(obj)
        result = kinds.mutate(ShmVolume, {}, obj)
        assert kinds.mutate(ShmVolume, {}, result) == result, where
        before, after = kinds.view(original), kinds.view(result)
        for old_pod, pod in zip(before.pods, after.pods, strict=True):
            gpu = old_pod.resources_matching(["nvidia.com/*", "amd.com/gpu"])
            for container in pod.containers:
                if container.container_type == workloads.CONTAINER and gpu:
                    assert len(_shm_mounts(container)) == 1, (where, container.name)
            old_gpu = any(c.container_type == workloads.CONTAINER
                          and c.limits.keys() & {"nvidia.com/gpu"} for c in old_pod.containers)
            if not old_gpu and not gpu:
                assert old_pod.spec == pod.spec, where
        changed += result != original
    # paddle-simple-gpu already mounts /dev/shm and must stay as written.
    paddle = dict(kinds.corpus(shared_dir))["paddlejob/paddle-simple-gpu.yaml#0"]
    assert kinds.mutate(ShmVolume, {}, paddle) == paddle
    assert changed >= 10

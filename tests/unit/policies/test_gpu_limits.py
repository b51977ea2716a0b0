"""gpu-limits: caps per container, pod and whole workload; names by namespace; whole numbers."""

from __future__ import annotations

import pytest

from policies.gpu_limits import GpuLimits
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

CAPS = {"maxPerContainer": 4, "maxPerPod": 6, "maxPerWorkload": 10}


def _spec(*gpus: int, init: int = 0) -> dict:
    containers = [f.container(f"c{i}", limits={"nvidia.com/gpu": n}) for i, n in enumerate(gpus)]
    extra = {}
    if init:
        extra["initContainers"] = [f.container("warmup", limits={"nvidia.com/gpu": init})]
    return f.pod_spec(*containers, **extra)


def _whats(found: list) -> list[str]:
    return [v.what for v in found]


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_workload_total_counts_every_role_times_its_replicas(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), _spec(2, 1), replicas=3)
    workload = kinds.view(obj)
    total = 3 * workload.total_pods  # 3 accelerators per pod
    found = kinds.violations(GpuLimits, {"maxPerWorkload": total}, obj)
    assert found == []
    found = kinds.violations(GpuLimits, {"maxPerWorkload": total - 1}, obj)
    assert len(found) == 1
    assert f"asks for {total} accelerators in total" in found[0].what
    assert found[0].path == "/spec"


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_container_and_pod_caps_on_every_kind(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), _spec(5, 3))
    found = kinds.violations(GpuLimits, {"maxPerContainer": 4, "maxPerPod": 6}, obj)
    pods = kinds.view(obj).pods
    assert len(found) == 2 * len(pods)
    for pod in pods:
        mine = [v for v in found if v.pod == pod.pointer]
        assert [v.container for v in mine] == ["c0", None]
        assert mine[0].what.startswith("asks for 5 accelerators (nvidia.com/gpu); at most 4")
        assert mine[0].path == pod.containers[0].pointer + "/resources/limits"
        assert "asks for 8 accelerators; at most 6 are allowed per pod" in mine[1].what


def test_pod_count_is_the_larger_of_containers_and_the_biggest_init_container() -> None:
    assert kinds.violations(GpuLimits, {"maxPerPod": 4}, f.pod(_spec(2, 2, init=4))) == []
    found = kinds.violations(GpuLimits, {"maxPerPod": 4}, f.pod(_spec(1, init=5)))
    assert "asks for 5 accelerators" in found[0].what


def test_namespace_entries_override_only_what_they_set() -> None:
    params = {**CAPS, "allowed": ["nvidia.com/gpu"],
              "namespaces": {"dev-*": {"allowed": ["nvidia.com/mig-*", "nvidia.com/gpu"],
                                       "maxPerContainer": 1}}}
    mig_spec = f.pod_spec(f.container(limits={"nvidia.com/mig-1g.5gb": 1}))
    mig = f.pod(mig_spec, namespace="dev-a")
    assert kinds.violations(GpuLimits, params, mig, namespace="dev-a") == []
    found = kinds.violations(GpuLimits, params, f.pod(mig_spec, namespace="prod"))
    assert _whats(found) == ["nvidia.com/mig-1g.5gb is not allowed in namespace prod "
                             "(allowed: nvidia.com/gpu)"]
    assert found[0].fix == "request one of nvidia.com/gpu instead"
    two = f.pod(_spec(2))
    del two["metadata"]["namespace"]  # generateName-style: the request's namespace counts
    assert _whats(kinds.violations(GpuLimits, params, two, namespace="dev-a")) == [
        "asks for 2 accelerators (nvidia.com/gpu); at most 1 are allowed per container in "
        "namespace dev-a"]
    assert kinds.violations(GpuLimits, params, two, namespace="prod") == []


@pytest.mark.parametrize("value", ["0.5", "500m", "1.5", -1, "abc"])
def test_fractional_or_invalid_amounts_are_rejected(value: object) -> None:
    obj = f.pod(f.pod_spec(f.container(requests={"nvidia.com/gpu": value},
                                       limits={"nvidia.com/gpu": value})))
    found = kinds.violations(GpuLimits, {}, obj)
    assert [v.path for v in found] == ["/spec/containers/0/resources/limits/nvidia.com~1gpu",
                                       "/spec/containers/0/resources/requests/nvidia.com~1gpu"]
    assert "not a whole number" in found[0].what


def test_whole_and_time_sliced_gpus_in_one_pod_conflict() -> None:
    obj = f.pod(f.pod_spec(f.container("a", limits={"nvidia.com/gpu": 1}),
                           f.container("b", limits={"nvidia.com/gpu.shared": 1})))
    found = kinds.violations(GpuLimits, {}, obj)
    assert _whats(found) == ["the pod asks for nvidia.com/gpu and nvidia.com/gpu.shared, which "
                             "no node offers together (whole and shared/time-sliced devices)"]
    shared_only = f.pod(f.pod_spec(f.container(limits={"nvidia.com/gpu.shared": 2})))
    assert kinds.violations(GpuLimits, {}, shared_only) == []


def test_defaults_accept_big_whole_asks() -> None:
    obj = kinds.wrap(kinds.kind_spec("kubeflow.org/PyTorchJob"), _spec(8), replicas=64)
    assert kinds.violations(GpuLimits, {}, obj) == []


def test_through_the_engine_the_message_names_policy_object_and_fix() -> None:
    obj = kinds.wrap(kinds.kind_spec("ray.io/RayCluster"), _spec(2), name="big", replicas=4)
    _, validated, _ = kinds.check({"gpu-limits": {"params": {"maxPerWorkload": 8}}}, obj)
    assert not validated.allowed
    assert validated.message == (
        "[gpu-limits] RayCluster ml/big: the workload asks for 10 accelerators in total "
        "(head: 2 x 1 pod; gpu: 2 x 4 pods); at most 8 are allowed per workload in namespace "
        "ml (lower the replicas or the accelerators per pod, or ask the platform team for a "
        "higher gpu-limits maxPerWorkload)")


def test_bad_params_are_config_errors() -> None:
    with pytest.raises(errors.ConfigError, match=r"gpu-limits\.params\.maxPerPod"):
        kinds.check({"gpu-limits": {"params": {"maxPerPod": -1}}}, f.pod())
    with pytest.raises(errors.ConfigError, match=r"conflicts\[0\]"):
        kinds.check({"gpu-limits": {"params": {"conflicts": [["nvidia.com/gpu"]]}}}, f.pod())


@pytest.mark.corpus
def test_corpus_totals_and_fractions(shared_dir) -> None:
    corpus = dict(kinds.corpus(shared_dir))
    for where, obj in corpus.items():
        assert not [v for v in kinds.violations(GpuLimits, {}, obj)
                    if "whole" in v.what], where  # real manifests ask for whole devices
    # kubeflow/mpi-operator nccl-tests: workers of 8 GPUs each.
    nccl = corpus["mpijob/v2beta1-nccl-tests-privileged.yaml#0"]
    workload = kinds.view(nccl)
    total = sum(8 * p.replicas for p in workload.pods if p.role == "Worker")
    assert total >= 8
    assert kinds.violations(GpuLimits, {"maxPerWorkload": total}, nccl) == []
    assert len(kinds.violations(GpuLimits, {"maxPerWorkload": total - 1}, nccl)) == 1
    # HAMi's MIG example is refused where only whole GPUs are allowed.
    mig = corpus["pod/hami-mig-3g-20gb.yaml#0"]
    found = kinds.violations(GpuLimits, {"allowed": ["nvidia.com/gpu"]}, mig)
    assert [v.what.split()[0] for v in found] == ["nvidia.com/mig-3g.20gb"]

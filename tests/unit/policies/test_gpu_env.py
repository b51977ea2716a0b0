"""gpu-env: variables reach accelerator containers only, and never overwrite the user's."""

from __future__ import annotations

import pytest

from policies.gpu_env import GpuEnv
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

PARAMS = {
    "env": {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "NCCL_DEBUG": "WARN"},
    "byResource": {"nvidia.com/mig-*": {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100"}},
    "namespaces": {"dev-*": {"GPU_MEMORY_FRACTION": "0.5", "NCCL_DEBUG": "INFO"},
                   "*": {"GPU_MEMORY_FRACTION": "0.9"}},
}


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_only_accelerator_containers_of_every_kind_get_the_variables(kind_id: str) -> None:
    spec = f.pod_spec(f.container("gpu", limits=f.GPU),
                      f.container("cpu", limits=f.LIMITED),
                      initContainers=[f.container("init-gpu", requests=f.GPU, limits=f.GPU)])
    result = kinds.mutate(GpuEnv, PARAMS, kinds.wrap(kinds.kind_spec(kind_id), spec))
    containers = {c.name: c.data for _, c in kinds.view(result).containers()}
    expected = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "NCCL_DEBUG": "WARN",
                "GPU_MEMORY_FRACTION": "0.9"}
    assert _env(containers["gpu"]) == expected
    assert _env(containers["init-gpu"]) == expected
    assert "env" not in containers["cpu"]
    assert kinds.mutate(GpuEnv, PARAMS, result) == result


def test_a_variable_the_user_set_is_never_overwritten_and_order_is_kept() -> None:
    user = [{"name": "NCCL_DEBUG", "value": "TRACE"},
            {"name": "GPU_MEMORY_FRACTION", "valueFrom": {"configMapKeyRef": {
                "name": "gpu", "key": "fraction"}}}]
    obj = f.pod(f.pod_spec(f.container(limits=f.GPU, env=[dict(e) for e in user])))
    env = kinds.mutate(GpuEnv, PARAMS, obj)["spec"]["containers"][0]["env"]
    assert env[:2] == user
    assert env[2:] == [{"name": "TF_FORCE_GPU_ALLOW_GROWTH", "value": "true"}]


def test_namespace_and_resource_entries_add_and_override() -> None:
    obj = f.pod(f.pod_spec(f.container(limits={"nvidia.com/mig-1g.5gb": 1})), namespace="dev-a")
    env = _env(kinds.mutate(GpuEnv, PARAMS, obj, namespace="dev-a")["spec"]["containers"][0])
    assert env == {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "NCCL_DEBUG": "INFO",
                   "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100", "GPU_MEMORY_FRACTION": "0.5"}


def test_the_request_namespace_counts_when_the_object_has_none() -> None:
    obj = f.pod(f.pod_spec(f.container(limits=f.GPU)))
    del obj["metadata"]["namespace"]
    env = _env(kinds.mutate(GpuEnv, PARAMS, obj, namespace="dev-x")["spec"]["containers"][0])
    assert env["GPU_MEMORY_FRACTION"] == "0.5"


def test_defaults_inject_nothing() -> None:
    obj = f.pod(f.pod_spec(f.container(limits=f.GPU)))
    assert kinds.mutate(GpuEnv, {}, obj) == obj


def test_invalid_variable_names_are_config_errors() -> None:
    with pytest.raises(errors.ConfigError, match=r"gpu-env.*namespaces.dev-\*: '1BAD'"):
        kinds.check({"gpu-env": {"params": {"namespaces": {"dev-*": {"1BAD": "x"}}}}}, f.pod())


def test_through_the_engine_a_second_pass_is_empty() -> None:
    obj = kinds.wrap(kinds.kind_spec("ray.io/RayService"), f.pod_spec(f.container(limits=f.GPU)))
    mutated, _, result = kinds.check({"gpu-env": {"params": PARAMS}}, obj)
    assert mutated.mutated_by == ["gpu-env"]
    assert len(mutated.patch) == 2  # head and worker group container env
    again, _, _ = kinds.check({"gpu-env": {"params": PARAMS}}, result)
    assert again.patch == []


@pytest.mark.corpus
def test_corpus_user_variables_survive(shared_dir) -> None:
    changed = 0
    for where, obj in kinds.corpus(shared_dir):
        result = kinds.mutate(GpuEnv, PARAMS, obj)
        assert kinds.mutate(GpuEnv, PARAMS, result) == result, where
        for (_, old), (_, new) in zip(kinds.view(obj).containers(),
                                      kinds.view(result).containers(), strict=True):
            old_env = old.data.get("env") or []
            assert new.data.get("env", [])[:len(old_env)] == old_env, where
            if not old.resource_names() & {"nvidia.com/gpu"} and not any(
                    r.startswith(("nvidia.com/mig-", "amd.com/", "google.com/tpu"))
                    for r in old.resource_names()):
                assert new.data.get("env") == old.data.get("env"), (where, old.name)
        changed += result != obj
    assert changed >= 10

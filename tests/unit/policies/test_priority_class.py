"""priority-class: pod specs get the class of their workload kind, never over a set one."""

from __future__ import annotations

import pytest

from policies.priority_class import PriorityClass
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

CLASSES = {"training": "ml-training", "inference": "ml-serving", "batch": "ml-batch",
           "service": "ml-service", "other": "ml-default", "notebook": "ml-interactive"}
PARAMS = {"classes": CLASSES, "namespaces": {"prod-*": {"training": "ml-training-prod"}}}
EXPECTED = {  # the workload class each kind belongs to, written out by hand
    "core/Pod": "other", "core/ReplicationController": "service",
    "apps/Deployment": "service", "apps/StatefulSet": "service", "apps/DaemonSet": "service",
    "apps/ReplicaSet": "service", "batch/Job": "batch", "batch/CronJob": "batch",
    **{f"kubeflow.org/{k}": "training" for k in (
        "PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob", "MXJob")},
    "trainer.kubeflow.org/TrainingRuntime": "training",
    "trainer.kubeflow.org/ClusterTrainingRuntime": "training",
    "jobset.x-k8s.io/JobSet": "training", "leaderworkerset.x-k8s.io/LeaderWorkerSet": "inference",
    "ray.io/RayCluster": "training", "ray.io/RayJob": "training", "ray.io/RayService": "inference",
    "serving.kserve.io/InferenceService": "inference",
    "serving.kubeflow.org/InferenceService": "inference", "batch.volcano.sh/Job": "training",
    "argoproj.io/Workflow": "batch", "argoproj.io/WorkflowTemplate": "batch",
    "argoproj.io/ClusterWorkflowTemplate": "batch", "argoproj.io/CronWorkflow": "batch",
}


def test_the_expectation_table_covers_every_kind() -> None:
    assert set(EXPECTED) == set(kinds.KIND_IDS)


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_every_kind_gets_the_class_of_its_workload_class(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container()))
    result = kinds.mutate(PriorityClass, PARAMS, obj)
    pods = kinds.view(result).pods
    assert pods
    for pod in pods:
        assert pod.spec["priorityClassName"] == CLASSES[EXPECTED[kind_id]]
    assert kinds.mutate(PriorityClass, PARAMS, result) == result


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_a_set_class_or_priority_is_never_overridden(kind_id: str) -> None:
    for extra in ({"priorityClassName": "mine"}, {"priority": 1000}):
        obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container(), **extra))
        assert kinds.mutate(PriorityClass, PARAMS, obj) == obj


def test_notebook_label_wins_over_the_kind_class() -> None:
    obj = kinds.wrap(kinds.kind_spec("apps/StatefulSet"), f.pod_spec(f.container()),
                     template_labels={"notebook-name": "my-nb"})
    result = kinds.mutate(PriorityClass, PARAMS, obj)
    assert result["spec"]["template"]["spec"]["priorityClassName"] == "ml-interactive"


def test_namespace_overrides_and_unlisted_classes() -> None:
    job = kinds.wrap(kinds.kind_spec("kubeflow.org/PyTorchJob"), f.pod_spec(f.container()),
                     namespace="prod-eu")
    result = kinds.mutate(PriorityClass, PARAMS, job, namespace="prod-eu")
    spec = result["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert spec["priorityClassName"] == "ml-training-prod"
    only_training = {"classes": {"training": "ml-training"}}
    deployment = kinds.wrap(kinds.kind_spec("apps/Deployment"), f.pod_spec(f.container()))
    assert kinds.mutate(PriorityClass, only_training, deployment) == deployment


def test_defaults_set_nothing() -> None:
    job = kinds.wrap(kinds.kind_spec("kubeflow.org/PyTorchJob"), f.pod_spec(f.container()))
    assert kinds.mutate(PriorityClass, {}, job) == job


def test_unknown_workload_class_and_bad_names_are_config_errors() -> None:
    with pytest.raises(errors.ConfigError, match=r"priority-class\.params\.classes\.gpu"):
        kinds.check({"priority-class": {"params": {"classes": {"gpu": "x"}}}}, f.pod())
    with pytest.raises(errors.ConfigError, match=r"classes\.training: 'High'"):
        kinds.check({"priority-class": {"params": {"classes": {"training": "High"}}}}, f.pod())


@pytest.mark.corpus
def test_corpus_classes_are_added_only_where_missing(shared_dir) -> None:
    for where, obj in kinds.corpus(shared_dir):
        result = kinds.mutate(PriorityClass, PARAMS, obj)
        for old_pod, pod in zip(kinds.view(obj).pods, kinds.view(result).pods, strict=True):
            if old_pod.spec.get("priorityClassName"):
                assert pod.spec["priorityClassName"] == old_pod.spec["priorityClassName"], where
            else:
                assert pod.spec["priorityClassName"] in CLASSES.values(), where

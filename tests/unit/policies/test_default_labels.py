"""default-labels: ownership labels reach pod templates; Kueue queue defaults per namespace."""

from __future__ import annotations

import pytest

from policies.default_labels import QUEUE_LABEL, DefaultLabels
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

PARAMS = {
    "namespaceLabels": {"team-a-*": {"team": "a", "cost-center": "cc-100"},
                        "*": {"cost-center": "shared"}},
    "queueNames": {"team-a-*": "a-queue"},
}
KUEUE_KINDS = {"core/Pod", "batch/Job", "batch/CronJob", "jobset.x-k8s.io/JobSet",
               "ray.io/RayJob", "ray.io/RayCluster", "apps/Deployment", "apps/StatefulSet",
               "leaderworkerset.x-k8s.io/LeaderWorkerSet",
               *(f"kubeflow.org/{k}" for k in ("PyTorchJob", "TFJob", "MPIJob", "XGBoostJob",
                                               "PaddleJob", "JAXJob"))}


def _queue(obj: dict) -> str | None:
    holder = obj["spec"]["jobTemplate"] if obj["kind"] == "CronJob" else obj
    return holder.get("metadata", {}).get("labels", {}).get(QUEUE_LABEL)


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_object_labels_and_namespace_labels_reach_every_pod_template(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container()), namespace="team-a-1",
                     labels={"team": "vision", "other": "x"}, template_labels={"app": "t"})
    result = kinds.mutate(DefaultLabels, PARAMS, obj, namespace="team-a-1")
    pods = kinds.view(result, namespace="team-a-1").pods
    assert pods
    expected = {"app": "t", "team": "vision", "cost-center": "cc-100"}
    if kind_id == "core/Pod":  # the pod is its own template
        expected.update({"other": "x", QUEUE_LABEL: "a-queue"})
    for pod in pods:
        # the object's team wins over the namespace's; `other` is not a copied key
        assert pod.labels == expected
    expected_queue = "a-queue" if kind_id in KUEUE_KINDS else None
    assert _queue(result) == expected_queue
    assert kinds.mutate(DefaultLabels, PARAMS, result, namespace="team-a-1") == result


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_template_labels_the_user_set_are_kept(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container()), namespace="team-a-1",
                     labels={"team": "vision", QUEUE_LABEL: "mine"},
                     template_labels={"team": "nlp", "cost-center": "cc-7"})
    result = kinds.mutate(DefaultLabels, PARAMS, obj, namespace="team-a-1")
    for pod in kinds.view(result).pods:
        assert pod.labels["team"] == "nlp"
        assert pod.labels["cost-center"] == "cc-7"
    if kind_id != "batch/CronJob":
        assert result["metadata"]["labels"][QUEUE_LABEL] == "mine"


def test_queue_label_only_on_create() -> None:
    obj = kinds.wrap(kinds.kind_spec("apps/Deployment"), f.pod_spec(f.container()),
                     namespace="team-a-2")
    updated = kinds.mutate(DefaultLabels, PARAMS, obj, namespace="team-a-2", operation="UPDATE")
    assert _queue(updated) is None
    assert updated["spec"]["template"]["metadata"]["labels"] == {"team": "a",
                                                                 "cost-center": "cc-100"}


def test_volcano_job_is_not_a_kueue_kind_even_though_it_is_named_job() -> None:
    obj = kinds.wrap(kinds.kind_spec("batch.volcano.sh/Job"), f.pod_spec(f.container()),
                     namespace="team-a-1")
    assert _queue(kinds.mutate(DefaultLabels, PARAMS, obj, namespace="team-a-1")) is None


def test_first_matching_namespace_glob_applies() -> None:
    obj = f.pod(namespace="research")
    result = kinds.mutate(DefaultLabels, PARAMS, obj, namespace="research")
    assert result["metadata"]["labels"] == {"cost-center": "shared"}
    assert QUEUE_LABEL not in result["metadata"]["labels"]


def test_defaults_only_copy_team_and_cost_center() -> None:
    job = kinds.wrap(kinds.kind_spec("kubeflow.org/PyTorchJob"), f.pod_spec(f.container()),
                     labels={"team": "x", "cost-center": "y", "secret": "z"})
    result = kinds.mutate(DefaultLabels, {}, job)
    labels = result["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["metadata"]["labels"]
    assert labels == {"team": "x", "cost-center": "y"}
    assert QUEUE_LABEL not in result["metadata"]["labels"]


@pytest.mark.parametrize(("params", "message"), [
    ({"namespaceLabels": {"a-*": {"team": "not valid!"}}}, r"namespaceLabels\.a-\*: team="),
    ({"copyLabels": ["-bad"]}, r"copyLabels: '-bad'"),
    ({"queueNames": {"*": ""}}, r"queueNames\.\*: ''"),
])
def test_invalid_labels_are_config_errors(params: dict, message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        kinds.check({"default-labels": {"params": params}}, f.pod())


def test_through_the_engine_patch_and_second_pass() -> None:
    obj = kinds.wrap(kinds.kind_spec("batch/CronJob"), f.pod_spec(f.container()),
                     namespace="team-a-3", labels={"team": "t"})
    mutated, _, result = kinds.check({"default-labels": {"params": PARAMS}}, obj,
                                     namespace="team-a-3")
    assert {op["path"] for op in mutated.patch} == {
        "/spec/jobTemplate/metadata", "/spec/jobTemplate/spec/template/metadata"}
    assert result["spec"]["jobTemplate"]["metadata"] == {"labels": {QUEUE_LABEL: "a-queue"}}
    again, _, _ = kinds.check({"default-labels": {"params": PARAMS}}, result,
                              namespace="team-a-3")
    assert again.patch == []


@pytest.mark.corpus
def test_corpus_every_pod_template_ends_up_attributed(shared_dir) -> None:
    for where, obj in kinds.corpus(shared_dir):
        result = kinds.mutate(DefaultLabels, PARAMS, obj, namespace="team-a-9")
        assert kinds.mutate(DefaultLabels, PARAMS, result, namespace="team-a-9") == result, where
        for old_pod, pod in zip(kinds.view(obj).pods, kinds.view(result).pods, strict=True):
            assert {**pod.labels, **old_pod.labels} == pod.labels, where  # nothing changed
            assert "cost-center" in pod.labels, where

"""required-labels: configured labels on the object (and templates), values by pattern."""

from __future__ import annotations

import pytest

from policies.required_labels import RequiredLabels
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

PARAMS = {"labels": [{"key": "team", "example": "vision"},
                     {"key": "cost-center", "pattern": r"^cc-\d+$", "example": "cc-100"}],
          "namespaces": {"prod-*": [{"key": "app.kubernetes.io/name"}]}}
GOOD = {"team": "vision", "cost-center": "cc-42"}


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_labels_on_the_object_of_every_kind(kind_id: str) -> None:
    spec = kinds.kind_spec(kind_id)
    good = kinds.wrap(spec, f.pod_spec(f.container()), labels=GOOD)
    assert kinds.violations(RequiredLabels, PARAMS, good) == []
    bad = kinds.wrap(spec, f.pod_spec(f.container()), labels={"cost-center": "TBD"})
    found = kinds.violations(RequiredLabels, PARAMS, bad)
    assert [(v.what, v.path) for v in found] == [
        ("the object has no label team", "/metadata/labels/team"),
        ("the object has label cost-center='TBD', which does not match '^cc-\\\\d+$'",
         "/metadata/labels/cost-center")]
    assert found[0].fix == "add the label team: vision"
    assert found[1].fix == "set cost-center to a value matching '^cc-\\\\d+$', e.g. cc-100"


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_pod_templates_of_every_kind_when_asked(kind_id: str) -> None:
    params = {**PARAMS, "podTemplates": True}
    obj = kinds.wrap(kinds.kind_spec(kind_id), f.pod_spec(f.container()), labels=GOOD,
                     template_labels={"team": "vision"})
    found = kinds.violations(RequiredLabels, params, obj)
    workload = kinds.view(obj)
    if kind_id == "core/Pod":
        assert found == []  # the template labels are the pod's own, already complete
        return
    assert len(found) == len(workload.pods)
    for violation, pod in zip(found, workload.pods, strict=True):
        assert violation.what == f"the pod template ({pod.role}) has no label cost-center"
        assert violation.pod == pod.pointer
        # The pointer names the template's labels map, wherever the kind keeps it.
        parent, _, key = violation.path.rpartition("/")
        assert key == "cost-center" and parent.endswith("labels")
        holder = obj
        for token in parent.strip("/").split("/")[:-1]:
            holder = holder[int(token)] if isinstance(holder, list) else holder[
                token.replace("~1", "/").replace("~0", "~")]
        assert holder["labels"] == {"team": "vision"}


def test_namespace_entries_add_requirements() -> None:
    obj = f.pod(labels=GOOD, namespace="prod-eu")
    assert [v.what for v in kinds.violations(RequiredLabels, PARAMS, obj)] == [
        "the object has no label app.kubernetes.io/name"]
    obj["metadata"]["namespace"] = "dev"
    assert kinds.violations(RequiredLabels, PARAMS, obj) == []


def test_empty_value_fails_the_default_pattern_and_defaults_require_nothing() -> None:
    obj = f.pod(labels={"team": "", "cost-center": "cc-1"})
    assert [v.what for v in kinds.violations(RequiredLabels, PARAMS, obj)] == [
        "the object has label team='', which does not match '.+'"]
    assert kinds.violations(RequiredLabels, {}, f.pod()) == []


def test_bad_regex_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match=r"required-labels.*team: pattern '\('"):
        kinds.check({"required-labels": {"params": {"labels": [
            {"key": "team", "pattern": "("}]}}}, f.pod())


def test_through_the_engine() -> None:
    obj = kinds.wrap(kinds.kind_spec("kubeflow.org/TFJob"), f.pod_spec(f.container()),
                     name="mnist")
    _, validated, _ = kinds.check({"required-labels": {"params": {"labels": [
        {"key": "team"}]}}}, obj)
    assert validated.message == ("[required-labels] TFJob ml/mnist: the object has no label team "
                                 "(add the label team: <value>)")


@pytest.mark.corpus
def test_corpus_app_name_label(shared_dir) -> None:
    params = {"labels": [{"key": "app"}], "podTemplates": True}
    for where, obj in kinds.corpus(shared_dir):
        found = kinds.violations(RequiredLabels, params, obj)
        workload = kinds.view(obj)
        expected = 0 if workload.labels.get("app") else 1
        expected += sum(1 for p in workload.pods if p.metadata_holder is not workload.obj
                        and not p.labels.get("app"))
        assert len(found) == expected, where

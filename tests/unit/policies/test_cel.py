"""cel: user rules in CEL at object, pod and container scope, on every kind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests import factories
from tests.factories import container, pod_spec
from tests.fixtures.policies import kinds
from webhook import admission, config, decisions, engine, errors, kind_table


def build(*rules: dict[str, Any], mode: str | None = None) -> engine.Engine:
    policies: dict[str, Any] = {name: {"mode": "off"} for name in config.DEFAULT_POLICIES}
    policies["cel"] = {"params": {"rules": list(rules)}}
    if mode:
        policies["cel"]["mode"] = mode
    return engine.Engine.build(config.from_mapping({"policies": policies}, environ={}))


def decide(eng: engine.Engine, obj: dict[str, Any], **review: Any) -> decisions.Decision:
    body = json.dumps(factories.admission_review(obj, **review)).encode()
    return asyncio.run(eng.evaluate(admission.parse(body), engine.VALIDATE))


NO_HOST_NETWORK = {"name": "no-host-network", "scope": "pod",
                   "expression": "!has(podSpec.hostNetwork) || podSpec.hostNetwork == false",
                   "message": "hostNetwork is not allowed", "fix": "remove hostNetwork"}
PINNED = {"name": "pinned-images", "scope": "container",
          "expression": "container.image.contains('@sha256:')",
          "messageExpression": "'image ' + container.image + ' is not pinned by digest'"}


@pytest.mark.parametrize("kind", kind_table.WORKLOAD_KINDS, ids=kinds.KIND_IDS)
def test_container_rules_run_on_every_container_of_every_kind(kind: kind_table.KindSpec) -> None:
    spec = pod_spec(container("main", image="registry.example.com/ml/train@sha256:" + "a" * 64),
                    container("log", image="busybox:1.36"))
    obj = kinds.wrap(kind, spec)
    decision = decide(build(PINNED), obj)
    view = kind_table.view(obj)
    logs = [c for _, c in view.containers() if c.name == "log"]
    assert not decision.allowed
    assert [f.path for f in decision.findings] == [c.pointer for c in logs]
    assert all("[cel]" in f.message and "rule 'pinned-images': image busybox:1.36 is not "
               "pinned by digest" in f.message for f in decision.findings)


@pytest.mark.parametrize("kind", kind_table.WORKLOAD_KINDS, ids=kinds.KIND_IDS)
def test_pod_rules_see_every_pod_spec(kind: kind_table.KindSpec) -> None:
    obj = kinds.wrap(kind, pod_spec(container("main"), hostNetwork=True))
    decision = decide(build(NO_HOST_NETWORK), obj)
    pods = kind_table.view(obj).pods
    assert [f.path for f in decision.findings] == [p.pointer for p in pods]
    assert "hostNetwork is not allowed (remove hostNetwork)" in decision.message
    assert decide(build(NO_HOST_NETWORK), kinds.wrap(kind, pod_spec(container("m")))).allowed


def test_object_rules_see_request_and_old_object() -> None:
    rule = {"name": "immutable-team", "expression":
            "request.operation != 'UPDATE' || "
            "object.metadata.labels.team == oldObject.metadata.labels.team",
            "message": "the team label cannot change"}
    new = factories.pod(labels={"team": "vision"})
    old = factories.pod(labels={"team": "nlp"})
    eng = build(rule)
    assert decide(eng, new).allowed
    denied = decide(eng, new, operation="UPDATE", old=old)
    assert not denied.allowed and "the team label cannot change" in denied.message
    assert decide(eng, new, operation="UPDATE", old=new).allowed


def test_user_and_role_variables() -> None:
    rule = {"name": "gpu-only-for-ml", "scope": "container", "expression":
            "containerType == 'ephemeral' || !has(container.resources) || "
            "!has(container.resources.limits) || "
            "!('nvidia.com/gpu' in container.resources.limits) || "
            "request.userInfo.groups.exists(g, g == 'ml-team')",
            "message": "only ml-team may request GPUs"}
    obj = factories.pod(pod_spec(container("t", limits={"nvidia.com/gpu": "1"})))
    eng = build(rule)
    assert not decide(eng, obj, groups=["devs"]).allowed
    assert decide(eng, obj, groups=["devs", "ml-team"]).allowed


def test_runtime_errors_follow_failure_policy() -> None:
    rule = {"name": "team", "expression": "object.metadata.labels.team == 'x'",
            "message": "team must be x"}
    unlabelled = factories.pod()
    failed = decide(build(rule), unlabelled)
    assert not failed.allowed
    assert "rule 'team' could not be evaluated: no such field 'labels'" in failed.message
    assert "has()" in failed.message
    assert decide(build(dict(rule, failurePolicy="Ignore")), unlabelled).allowed
    not_bool = decide(build({"name": "n", "expression": "1 + 1"}), unlabelled)
    assert "returned int, not a bool" in not_bool.message


def test_a_broken_message_expression_falls_back_to_the_message() -> None:
    rule = dict(NO_HOST_NETWORK, messageExpression="podSpec.nope + 'x'")
    decision = decide(build(rule), factories.pod(pod_spec(hostNetwork=True)))
    assert "hostNetwork is not allowed" in decision.message


@pytest.mark.parametrize(("rule", "text"), [
    ({"name": "r", "expression": "object.spec.containers.all(c, c.image != ''"},
     "rules[0] 'r': expression does not compile at line 1, column"),
    ({"name": "r", "expression": "true", "messageExpression": "'a' +"},
     "rules[0] 'r': messageExpression does not compile at line 1, column 6"),
    ({"name": "r", "expression": "true", "scope": "node"}, "policies.cel.params.rules.0.scope"),
    ({"name": "r"}, "policies.cel.params.rules.0.expression"),
    ({"name": "r", "expression": "true", "mode": "loud"}, "policies.cel.params.rules.0.mode"),
])
def test_bad_rules_are_config_errors_at_load(rule: dict[str, Any], text: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        build(rule)
    assert text in str(info.value)


def test_rule_names_are_unique_and_each_rule_has_its_own_mode() -> None:
    with pytest.raises(errors.ConfigError, match="two rules are named 'a'"):
        build({"name": "a", "expression": "true"}, {"name": "a", "expression": "false"})
    eng = build(dict(NO_HOST_NETWORK, mode="warn"), mode="warn")
    decision = decide(eng, factories.pod(pod_spec(hostNetwork=True)))
    assert decision.allowed and any("hostNetwork" in w for w in decision.warnings)
    mixed = build(dict(NO_HOST_NETWORK, mode="warn"),
                  {"name": "no-host-pid", "expression": "!has(object.spec.hostPID) || "
                   "!object.spec.hostPID", "message": "hostPID is not allowed"},
                  {"name": "recorded", "expression": "false", "mode": "audit"})
    decision = decide(mixed, factories.pod(pod_spec(hostNetwork=True, hostPID=True)))
    assert not decision.allowed and "hostPID is not allowed" in decision.message
    assert "hostNetwork" not in decision.message
    assert any("hostNetwork" in w for w in decision.warnings)
    assert sorted(f.mode for f in decision.findings) == ["audit", "enforce", "warn"]
    enforce_rule_in_warn_policy = build(dict(NO_HOST_NETWORK, mode="enforce"), mode="warn")
    assert decide(enforce_rule_in_warn_policy,
                  factories.pod(pod_spec(hostNetwork=True))).allowed
    off = build(dict(NO_HOST_NETWORK, mode="off"))
    assert decide(off, factories.pod(pod_spec(hostNetwork=True))).allowed

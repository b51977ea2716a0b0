"""The engine's rules: exemptions, matching, modes, failure modes, UPDATE and DELETE rules."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests import factories
from tests.factories import GPU, LIMITED, container, pod, pod_spec
from webhook import (
    admission,
    config,
    decisions,
    engine,
    invocation,
    patches,
    plugins,
    policy,
    workloads,
)


# -- policies used only here ---------------------------------------------------------
class Boom(policy.ValidatingPolicy[policy.Params]):
    """Raises on every call."""

    name = "test-boom"

    def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        raise RuntimeError("kaboom")


class Sleepy(policy.ValidatingPolicy[policy.Params]):
    """Blocks its worker thread well past any timeout used here."""

    name = "test-sleepy"

    def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        time.sleep(1.0)
        return []


class AsyncSleepy(policy.ValidatingPolicy[policy.Params]):
    name = "test-async-sleepy"

    async def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        await asyncio.sleep(30)
        return []


class AsyncDeny(policy.ValidatingPolicy[policy.Params]):
    """An async generator policy that denies every container named `bad`."""

    name = "test-async-deny"

    async def validate(self, workload: workloads.Workload) -> AsyncIterator[policy.Violation]:
        for pod_view, c in workload.containers():
            if c.name == "bad":
                yield policy.Violation.at_container(pod_view, c, "is bad", "rename it")


class LabelA(policy.MutatingPolicy[policy.Params]):
    name = "test-label-a"

    def mutate(self, workload: workloads.Workload) -> None:
        for p in workload.pods:
            p.set_label("step", "a")


class LabelB(policy.MutatingPolicy[policy.Params]):
    """Sees LabelA's result: records what it saw."""

    name = "test-label-b"

    def mutate(self, workload: workloads.Workload) -> None:
        for p in workload.pods:
            p.set_label("after", str(p.labels.get("step")))


class HalfThenBoom(policy.MutatingPolicy[policy.Params]):
    """Edits the object, then raises: the edit must not leak into the patch."""

    name = "test-half"

    def mutate(self, workload: workloads.Workload) -> None:
        workload.pods[0].set_label("half", "done")
        raise ValueError("broke halfway")


class AddSidecar(policy.MutatingPolicy[policy.Params]):
    """Changes the pod's structure (a container more): the views after it must be new."""

    name = "test-add-sidecar"

    def mutate(self, workload: workloads.Workload) -> None:
        workload.pods[0].list_field("containers").append({"name": "sidecar", "image": "s:1"})


class NameContainers(policy.MutatingPolicy[policy.Params]):
    """Labels the pod with the containers its view holds; keeps every view it is handed."""

    name = "test-name-containers"
    edits_in_place = True
    seen: list[workloads.Workload] = []

    def mutate(self, workload: workloads.Workload) -> None:
        self.seen.append(workload)
        for p in workload.pods:
            p.set_label(f"containers-{len(self.seen)}", "-".join(c.name for c in p.containers))


class Yields(policy.ValidatingPolicy[policy.Params]):
    name = "test-yields-junk"

    def validate(self, workload: workloads.Workload) -> list[Any]:
        return ["not a violation"]


class Everything(policy.ValidatingPolicy[policy.Params]):
    """Flags every object it is handed: shows which kinds reach a policy."""

    name = "test-everything"

    def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        return [policy.Violation(f"saw a {workload.kind}")]


class ClaimsOnly(Everything):
    """The same, for the kinds without pod specs that it names."""

    name = "test-claims-only"
    default_kinds = ("resource.k8s.io/ResourceClaim",)


TEST_POLICIES = [Boom, Sleepy, AsyncSleepy, AsyncDeny, LabelA, LabelB, HalfThenBoom, Yields,
                 Everything, ClaimsOnly, AddSidecar, NameContainers]


def build(policies: dict[str, Any] | None = None, **top: Any) -> engine.Engine:
    catalogue = plugins.discover()
    for cls in TEST_POLICIES:
        catalogue.add(cls, "tests")
    cfg = config.from_mapping({"policies": policies or {}, **top}, environ={})
    return engine.Engine.build(cfg, catalogue)


def evaluate(eng: engine.Engine, review: dict[str, Any], phase: str) -> decisions.Decision:
    request = admission.parse(json.dumps(review).encode())
    return asyncio.run(eng.evaluate(request, phase))


def gpu_pod(**kw: Any) -> dict[str, Any]:
    return pod(pod_spec(container(limits={**LIMITED, **GPU})), **kw)


def bare_pod(**kw: Any) -> dict[str, Any]:
    return pod(pod_spec(container()), **kw)


# -- defaults ------------------------------------------------------------------------
def test_defaults_tolerate_gpu_default_requests_and_require_limits() -> None:
    eng = build()
    review = factories.admission_review(gpu_pod())
    mutated = evaluate(eng, review, engine.MUTATE)
    assert mutated.allowed and mutated.mutated_by == ["gpu-tolerations", "default-resources"]
    result = patches.apply(review["request"]["object"], mutated.patch)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        result["spec"]["tolerations"]
    # requests follow the limits (LimitRanger: a limit without request -> request = limit)
    assert result["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}
    validated = evaluate(eng, factories.admission_review(result), engine.VALIDATE)
    assert validated.allowed, validated.message


def test_second_mutation_pass_is_empty() -> None:
    eng = build()
    review = factories.admission_review(bare_pod())
    first = evaluate(eng, review, engine.MUTATE)
    assert first.patch
    again = patches.apply(review["request"]["object"], first.patch)
    assert evaluate(eng, factories.admission_review(again), engine.MUTATE).patch == []


def test_every_violation_is_in_one_message_in_the_documented_format() -> None:
    eng = build()
    obj = pod(pod_spec(container("a"), container("b", limits={"cpu": "1"})))
    decision = evaluate(eng, factories.admission_review(obj), engine.VALIDATE)
    assert not decision.allowed
    lines = decision.message.splitlines()
    assert lines == [
        '[require-limits] Pod ml/train /spec container "a": no cpu limit '
        "(set resources.limits.cpu, e.g. cpu: 500m)",
        '[require-limits] Pod ml/train /spec container "a": no memory limit '
        "(set resources.limits.memory, e.g. memory: 1Gi)",
        '[require-limits] Pod ml/train /spec container "b": no memory limit '
        "(set resources.limits.memory, e.g. memory: 1Gi)",
    ]


# -- what is never evaluated ----------------------------------------------------------
@pytest.mark.parametrize("namespace", ["kube-system", "mlgate-system"])
def test_system_namespaces_are_exempt(namespace: str) -> None:
    eng = build()
    decision = evaluate(eng, factories.admission_review(bare_pod(namespace=namespace)),
                        engine.VALIDATE)
    assert decision.allowed and "exempt" in decision.skipped and not decision.findings


def test_own_namespace_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLGATE_NAMESPACE", "platform-admission")
    eng = build()
    decision = evaluate(eng, factories.admission_review(bare_pod(namespace="platform-admission")),
                        engine.VALIDATE)
    assert decision.allowed and decision.skipped


@pytest.mark.parametrize(("exemptions", "review_kw"), [
    ({"users": ["ci-bot"]}, {"user": "ci-bot"}),
    ({"groups": ["system:masters"]}, {"groups": ["system:masters"]}),
    ({"namespaces": ["sandbox-*"]}, {"namespace": "sandbox-7"}),
    ({"kinds": ["Pod"]}, {}),
])
def test_configured_exemptions(exemptions: dict[str, Any], review_kw: dict[str, Any]) -> None:
    eng = build(exemptions=exemptions)
    decision = evaluate(eng, factories.admission_review(bare_pod(), **review_kw), engine.VALIDATE)
    assert decision.allowed and decision.skipped


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_pass(operation: str) -> None:
    eng = build()
    kw = {"old": bare_pod()} if operation == "DELETE" else {}
    review = factories.admission_review(None if operation == "DELETE" else bare_pod(),
                                        operation=operation, **kw)
    decision = evaluate(eng, review, engine.VALIDATE)
    assert decision.allowed and "not evaluated" in decision.skipped


def test_unknown_kinds_pass_untouched() -> None:
    eng = build()
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ml"},
           "data": {"a": "b"}}
    for phase in (engine.MUTATE, engine.VALIDATE):
        decision = evaluate(eng, factories.admission_review(obj), phase)
        assert decision.allowed and decision.patch == [] and "not a workload kind" in \
            decision.skipped


def test_kinds_without_pod_specs_reach_only_the_policies_that_name_them() -> None:
    claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
             "metadata": {"name": "c", "namespace": "ml"},
             "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                 "deviceClassName": "gpu.nvidia.com"}}]}}}
    eng = build({"test-everything": {}, "test-claims-only": {}})
    decision = evaluate(eng, factories.admission_review(claim), engine.VALIDATE)
    assert not decision.skipped
    assert decision.evaluated == [("test-claims-only", "enforce")]
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert [name for name, _ in decision.evaluated] == ["require-limits", "test-everything"]
    # match.kinds names them deliberately: then any policy judges them
    eng = build({"test-everything": {"match": {"kinds": ["ResourceClaim", "Pod"]}},
                 "test-claims-only": {"match": {"kinds": ["Pod"]}}})
    decision = evaluate(eng, factories.admission_review(claim), engine.VALIDATE)
    assert decision.evaluated == [("test-everything", "enforce")]
    assert decision.message == "[test-everything] ResourceClaim ml/c: saw a ResourceClaim"


def test_status_subresource_is_not_evaluated() -> None:
    eng = build()
    review = factories.admission_review(bare_pod(), operation="UPDATE", old=bare_pod(),
                                        sub_resource="status")
    assert evaluate(eng, review, engine.VALIDATE).allowed


def test_objects_being_deleted_are_never_denied() -> None:
    eng = build()
    obj = bare_pod()
    obj["metadata"]["deletionTimestamp"] = "2026-11-30T10:00:00Z"
    obj["metadata"]["finalizers"] = []
    old = bare_pod()
    old["metadata"]["finalizers"] = ["example.com/keep"]
    review = factories.admission_review(obj, operation="UPDATE", old=old)
    for phase in (engine.MUTATE, engine.VALIDATE):
        decision = evaluate(eng, review, phase)
        assert decision.allowed and decision.patch == []


def test_volcano_job_is_told_apart_from_batch_job_by_group() -> None:
    volcano = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
               "metadata": {"name": "v", "namespace": "ml"},
               "spec": {"tasks": [{"name": "worker", "replicas": 2,
                                   "template": {"spec": pod_spec(container())}}]}}
    decision = evaluate(build(), factories.admission_review(volcano), engine.VALIDATE)
    assert "/spec/tasks/0/template/spec" in decision.message


# -- UPDATE ---------------------------------------------------------------------------
def test_update_denies_only_new_violations() -> None:
    eng = build()
    old = pod(pod_spec(container("a")))
    new = pod(pod_spec(container("a"), container("b")))
    decision = evaluate(eng, factories.admission_review(new, operation="UPDATE", old=old),
                        engine.VALIDATE)
    assert not decision.allowed
    assert 'container "b"' in decision.message and 'container "a"' not in decision.message
    assert any('container "a"' in w and "already present" in w for w in decision.warnings)


def test_update_that_keeps_old_violations_is_allowed_with_warnings() -> None:
    eng = build()
    old = pod(pod_spec(container("a")))
    new = pod(pod_spec(container("a")), labels={"touched": "yes"})
    decision = evaluate(eng, factories.admission_review(new, operation="UPDATE", old=old),
                        engine.VALIDATE)
    assert decision.allowed and len(decision.warnings) == 2


def test_no_mutation_of_an_existing_pod_or_job_on_update() -> None:
    eng = build()
    old = gpu_pod()
    review = factories.admission_review(gpu_pod(labels={"x": "y"}), operation="UPDATE", old=old)
    decision = evaluate(eng, review, engine.MUTATE)
    assert decision.allowed and decision.patch == [] and "cannot change" in decision.skipped


def gpu_deployment(image: str = "img:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ml"},
            "spec": {"replicas": 1, "template": {"spec": pod_spec(
                container(image=image, limits=GPU))}}}


def test_deployment_template_is_mutated_on_update() -> None:
    review = factories.admission_review(gpu_deployment("img:2"), operation="UPDATE",
                                        old=gpu_deployment("img:1"))
    decision = evaluate(build(), review, engine.MUTATE)
    assert any(op["path"] == "/spec/template/spec/tolerations" for op in decision.patch)


def test_an_update_that_changes_no_pod_template_is_not_mutated() -> None:
    """Mutating it would change the template of an object made before mlgate, and so
    roll out all its pods because someone added a label or changed the replica count."""
    old = gpu_deployment()
    new = gpu_deployment()
    new["metadata"]["labels"] = {"team": "vision"}
    new["spec"]["replicas"] = 3
    decision = evaluate(build(), factories.admission_review(new, operation="UPDATE", old=old),
                        engine.MUTATE)
    assert decision.patch == [] and decision.skipped == "the update changes no pod template"
    new["spec"]["template"]["metadata"] = {"labels": {"rev": "2"}}  # a template change
    decision = evaluate(build(), factories.admission_review(new, operation="UPDATE", old=old),
                        engine.MUTATE)
    assert decision.patch and not decision.skipped


def test_mutate_on_update_is_configurable_for_custom_kinds() -> None:
    def job(image: str) -> dict[str, Any]:
        return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                "metadata": {"name": "p", "namespace": "ml"},
                "spec": {"pytorchReplicaSpecs": {"Worker": {"template": {
                    "spec": pod_spec(container(image=image, limits=GPU))}}}}}
    review = factories.admission_review(job("img:2"), operation="UPDATE", old=job("img:1"))
    assert evaluate(build(), review, engine.MUTATE).patch == []
    assert evaluate(build(mutateOnUpdate=["PyTorchJob"]), review, engine.MUTATE).patch


def test_dry_run_gets_the_real_verdict() -> None:
    eng = build()
    decision = evaluate(eng, factories.admission_review(bare_pod(), dry_run=True),
                        engine.VALIDATE)
    assert not decision.allowed and decision.dry_run


# -- modes ----------------------------------------------------------------------------
def test_warn_mode_warns_instead_of_denying() -> None:
    eng = build({"require-limits": {"mode": "warn"}})
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert decision.allowed and len(decision.warnings) == 2
    assert all(w.startswith("[require-limits]") for w in decision.warnings)


def test_audit_mode_only_records() -> None:
    eng = build({"require-limits": {"mode": "audit"}})
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert decision.allowed and not decision.warnings
    assert [f.mode for f in decision.findings] == ["audit", "audit"]
    assert decision.record()["violations"][0]["policy"] == "require-limits"


def test_off_mode_disables_a_default_policy() -> None:
    eng = build({"require-limits": {"mode": "off"}})
    assert evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE).allowed


def test_mutating_policy_in_warn_mode_changes_nothing_and_says_what_it_would() -> None:
    eng = build({"gpu-tolerations": {"mode": "warn"}, "default-resources": {"mode": "off"}})
    decision = evaluate(eng, factories.admission_review(gpu_pod()), engine.MUTATE)
    assert decision.patch == [] and decision.allowed
    assert "would change /spec/tolerations" in decision.warnings[0]


# -- order and chaining ---------------------------------------------------------------
def test_mutations_chain_in_config_order() -> None:
    eng = build({"test-label-a": {"mode": "enforce"}, "test-label-b": {"mode": "enforce"}})
    review = factories.admission_review(bare_pod())
    decision = evaluate(eng, review, engine.MUTATE)
    result = patches.apply(review["request"]["object"], decision.patch)
    assert result["metadata"]["labels"] == {"step": "a", "after": "a"}
    assert decision.mutated_by[-2:] == ["test-label-a", "test-label-b"]


def test_views_are_kept_only_after_a_policy_that_edits_in_place() -> None:
    NameContainers.seen.clear()
    eng = build({"test-name-containers": {"mode": "enforce"},
                 "test-name-containers-again": {"uses": "test-name-containers",
                                                "mode": "enforce"},
                 "test-add-sidecar": {"mode": "enforce"},
                 "test-name-containers-last": {"uses": "test-name-containers",
                                               "mode": "enforce"}})
    review = factories.admission_review(bare_pod())
    decision = evaluate(eng, review, engine.MUTATE)
    result = patches.apply(review["request"]["object"], decision.patch)
    first, again, last = NameContainers.seen
    assert again is first  # it changed the pod in place: the same views serve the next
    assert last is not first  # after the sidecar was added: views built again, and true
    assert result["metadata"]["labels"] == {"containers-1": "main", "containers-2": "main",
                                            "containers-3": "main-sidecar"}


# -- matching -------------------------------------------------------------------------
@pytest.mark.parametrize(("match", "applies"), [
    ({"kinds": ["Deployment"]}, False),
    ({"kinds": ["Pod"]}, True),
    ({"kinds": ["apps/Pod"]}, False),
    ({"namespaces": {"include": ["ml*"], "exclude": []}}, True),
    ({"namespaces": {"include": ["*"], "exclude": ["m?"]}}, False),
    ({"objectSelector": {"matchLabels": {"team": "a"}}}, True),
    ({"objectSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn",
                                               "values": ["a"]}]}}, False),
    ({"objectSelector": {"matchExpressions": [{"key": "gone", "operator": "DoesNotExist"}]}},
     True),
    ({"operations": ["UPDATE"]}, False),
])
def test_match(match: dict[str, Any], applies: bool) -> None:
    eng = build({"require-limits": {"match": match}})
    decision = evaluate(eng, factories.admission_review(bare_pod(labels={"team": "a"})),
                        engine.VALIDATE)
    assert decision.allowed is (not applies)


# -- failures -------------------------------------------------------------------------
def test_a_raising_policy_fails_closed_by_default() -> None:
    eng = build({"test-boom": {}, "require-limits": {"mode": "off"}})
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert not decision.allowed
    assert "[test-boom]" in decision.message and "RuntimeError: kaboom" in decision.message


def test_a_raising_policy_with_failure_ignore_lets_the_request_through() -> None:
    eng = build({"test-boom": {"failure": "ignore"}, "require-limits": {"mode": "off"}})
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert decision.allowed and "kaboom" in decision.warnings[0]


@pytest.mark.parametrize("name", ["test-sleepy", "test-async-sleepy"])
def test_a_slow_policy_times_out_into_its_failure_mode(name: str) -> None:
    eng = build({name: {"timeout": "50ms"}, "require-limits": {"mode": "off"}})
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert not decision.allowed and "timed out" in decision.message


def test_the_request_deadline_bounds_every_policy() -> None:
    eng = build({"test-async-sleepy": {"timeout": "10s"}, "require-limits": {"mode": "off"}},
                deadline="100ms")
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert not decision.allowed and "timed out" in decision.message
    assert decision.duration < 5  # bounded by the deadline, not the 10s policy timeout


def test_a_failed_mutation_does_not_leak_half_its_edit() -> None:
    eng = build({"test-half": {"failure": "ignore"}})
    review = factories.admission_review(bare_pod())
    decision = evaluate(eng, review, engine.MUTATE)
    assert decision.allowed
    assert not any("half" in op["path"] or "half" in json.dumps(op.get("value"))
                   for op in decision.patch)
    assert decision.mutated_by == ["default-resources"]


def test_a_policy_yielding_junk_is_a_policy_error() -> None:
    eng = build({"test-yields-junk": {}, "require-limits": {"mode": "off"}})
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert not decision.allowed and "not a Violation" in decision.message


def test_async_generator_policies_work() -> None:
    eng = build({"test-async-deny": {}, "require-limits": {"mode": "off"}})
    obj = pod(pod_spec(container("good"), container("bad")))
    decision = evaluate(eng, factories.admission_review(obj), engine.VALIDATE)
    assert decision.message == '[test-async-deny] Pod ml/train /spec container "bad": is bad ' \
                               "(rename it)"


# -- building -------------------------------------------------------------------------
def test_bad_params_name_the_policy_and_field() -> None:
    with pytest.raises(config.errors.ConfigError,
                       match=r"policies\.require-limits\.params\.resources"):
        build({"require-limits": {"params": {"resources": "cpu"}}})


def test_unknown_param_is_an_error() -> None:
    with pytest.raises(config.errors.ConfigError, match=r"params\.resorces"):
        build({"require-limits": {"params": {"resorces": ["cpu"]}}})


def test_unknown_enabled_policy_is_an_error() -> None:
    with pytest.raises(config.errors.PluginError, match="no-such-policy"):
        build({"no-such-policy": {"mode": "enforce"}})


def test_check_params_rejects_nonsense() -> None:
    with pytest.raises(config.errors.ConfigError, match="not a Kubernetes quantity"):
        build({"default-resources": {"params": {"default": {"requests": {"cpu": "lots"}}}}})


class InlineSlow(policy.ValidatingPolicy[policy.Params]):
    """Declares itself non-blocking, then overruns its timeout."""

    name = "test-inline-slow"
    blocking = False

    def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        time.sleep(0.2)
        return []


def test_a_non_blocking_policy_that_overruns_follows_its_failure_mode() -> None:
    catalogue = plugins.discover()
    catalogue.add(InlineSlow, "tests")
    cfg = config.from_mapping({"policies": {"test-inline-slow": {"timeout": "50ms"},
                                            "require-limits": {"mode": "off"}}}, environ={})
    eng = engine.Engine.build(cfg, catalogue)
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert not decision.allowed and "timed out" in decision.message


class Advisory(policy.ValidatingPolicy[policy.Params]):
    """Findings with their own, milder modes inside a policy that enforces."""

    name = "test-advisory"
    blocking = False

    def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        return [policy.Violation(what="heads up", fix="consider it", mode="warn"),
                policy.Violation(what="for the record", mode="audit"),
                policy.Violation(what="hard no", fix="fix it")]


def test_advisory_violations_warn_in_enforce_mode() -> None:
    catalogue = plugins.discover()
    catalogue.add(Advisory, "tests")
    cfg = config.from_mapping({"policies": {"test-advisory": {},
                                            "require-limits": {"mode": "off"}}}, environ={})
    decision = evaluate(engine.Engine.build(cfg, catalogue),
                        factories.admission_review(bare_pod()), engine.VALIDATE)
    assert not decision.allowed and decision.message.endswith("hard no (fix it)")
    assert decision.warnings == ["[test-advisory] Pod ml/train: heads up (consider it)"]
    assert [f.mode for f in decision.findings] == ["warn", "audit", "enforce"]


def test_a_finding_is_never_stronger_than_its_policy() -> None:
    catalogue = plugins.discover()
    catalogue.add(Advisory, "tests")
    cfg = config.from_mapping({"policies": {"test-advisory": {"mode": "warn"},
                                            "require-limits": {"mode": "off"}}}, environ={})
    decision = evaluate(engine.Engine.build(cfg, catalogue),
                        factories.admission_review(bare_pod()), engine.VALIDATE)
    assert decision.allowed
    assert [f.mode for f in decision.findings] == ["warn", "audit", "warn"]


def test_decision_lists_the_policies_that_ran_with_their_modes() -> None:
    eng = build({"require-limits": {"mode": "warn",
                                    "match": {"objectSelector": {"matchLabels": {"t": "a"}}}}})
    matching = evaluate(eng, factories.admission_review(bare_pod(labels={"t": "a"})),
                        engine.VALIDATE)
    other = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert matching.evaluated == [("require-limits", "warn")]
    assert other.evaluated == []
    mutated = evaluate(eng, factories.admission_review(bare_pod()), engine.MUTATE)
    assert mutated.evaluated == [("gpu-tolerations", "enforce"), ("default-resources", "enforce")]


# -- policy instances (`uses:`) -----------------------------------------------------------
def test_a_second_instance_of_a_policy_runs_with_its_own_name_params_and_mode() -> None:
    eng = build({
        "require-limits": {"mode": "off"},
        "cel": {"params": {"rules": [{"name": "team", "expression": "has(object.metadata.labels)"
                                      " && 'team' in object.metadata.labels"}]}},
        "gpu-jobs-cel": {"uses": "cel", "mode": "warn",
                         "params": {"rules": [{"name": "backoff", "expression": "false",
                                               "message": "set a backoff limit"}]}}})
    assert [(p.name, p.mode, type(p.policy).__name__) for p in eng.validating] == [
        ("cel", "enforce", "Cel"), ("gpu-jobs-cel", "warn", "Cel")]
    decision = evaluate(eng, factories.admission_review(bare_pod()), engine.VALIDATE)
    assert not decision.allowed and decision.message.startswith("[cel] ")
    assert decision.warnings == [
        "[gpu-jobs-cel] Pod ml/train: rule 'backoff': set a backoff limit"]
    assert decision.evaluated == [("cel", "enforce"), ("gpu-jobs-cel", "warn")]


def test_an_instance_of_an_unknown_policy_names_its_key() -> None:
    with pytest.raises(config.errors.PluginError,
                       match=r"policies\.gpu-jobs-cel\.uses: policy 'cle' is enabled but no "
                             r"module provides it"):
        build({"gpu-jobs-cel": {"uses": "cle"}})


def test_an_instance_gets_its_own_name_in_the_environment() -> None:
    eng = build({"strict-limits": {"uses": "require-limits", "timeout": "1s"}})
    instance = next(p.policy for p in eng.active if p.name == "strict-limits")
    assert (instance.env.name, instance.env.timeout) == ("strict-limits", 1.0)


class WhereItRan(policy.ValidatingPolicy[policy.Params]):
    """A sync policy left blocking (the default): warns with the name of its thread."""

    name = "test-where-it-ran"

    def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        return [policy.Violation(what=f"ran in {threading.current_thread().name}",
                                 mode="warn")]


def test_policies_answer_while_every_thread_of_the_default_executor_is_taken() -> None:
    """Issue 12: journal writes and audit queries held every thread of the loop's default
    executor, and `cel` and blocking policies timed out waiting for one. Blocking policies
    now run in admission's own threads, and `cel` needs none."""
    catalogue = plugins.discover()
    catalogue.add(WhereItRan, "tests")
    cfg = config.from_mapping({"policies": {
        "test-where-it-ran": {"timeout": "1s"}, "require-limits": {"mode": "off"},
        "cel": {"timeout": "1s", "params": {"rules": [
            {"name": "no-host-network", "expression": "!has(object.spec.hostNetwork)"}]}}}},
        environ={})
    threads = invocation.PolicyThreads(2)
    eng = engine.Engine.build(cfg, catalogue, executor=threads.executor)
    request = admission.parse(json.dumps(factories.admission_review(bare_pod())).encode())
    release = threading.Event()

    async def with_the_default_executor_taken() -> decisions.Decision:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(2))
        held = [loop.run_in_executor(None, release.wait) for _ in range(2)]
        try:
            return await eng.evaluate(request, engine.VALIDATE)
        finally:
            release.set()
            await asyncio.gather(*held)
            await threads.stop()

    decision = asyncio.run(with_the_default_executor_taken())
    assert decision.allowed, decision.message
    assert len(decision.warnings) == 1, decision.warnings
    assert "ran in mlgate-policy_" in decision.warnings[0]


def test_cel_needs_no_thread_at_all() -> None:
    """CEL is pure computation on the event loop: a policy stuck in every one of the
    policy threads does not make `cel` wait (see policies/cel.py)."""
    cfg = config.from_mapping({"policies": {
        "require-limits": {"mode": "off"},
        "cel": {"timeout": "1s", "params": {"rules": [
            {"name": "no-host-network", "expression": "!has(object.spec.hostNetwork)"}]}}}},
        environ={})
    threads = invocation.PolicyThreads(1)
    eng = engine.Engine.build(cfg, executor=threads.executor)
    request = admission.parse(json.dumps(factories.admission_review(bare_pod())).encode())
    release = threading.Event()
    stuck = threads.executor.submit(release.wait)  # a blocking policy past its timeout
    try:
        decision = asyncio.run(eng.evaluate(request, engine.VALIDATE))
    finally:
        release.set()
        stuck.result()
        asyncio.run(threads.stop())
    assert decision.allowed, decision.message
    assert ("cel", "enforce") in decision.evaluated

"""dra-claims: device classes, counts, allocationMode All and admin access of the claims
themselves, in every served API shape; and no other policy judging claims by accident."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.dra_claims import DraClaims, field_name
from tests import factories
from tests.fixtures.policies import kinds
from tests.unit.test_accelerators import claim, device, template
from webhook import admission, cli, config, dra, engine, plugins, policy, workloads
from webhook.cli import load_manifests

JSON = dict[str, Any]
VERSIONS = ["v1", "v1beta2", "v1beta1", "v1alpha3"]
NESTED = {"v1": "exactly.", "v1beta2": "exactly.", "v1beta1": "", "v1alpha3": ""}
NVIDIA = {"deviceClasses": ["gpu.nvidia.com", "mig.nvidia.com"], "maxPerRequest": 8,
          "maxPerClaim": 8}
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def gpu(name: str = "gpu", device_class: str = "gpu.nvidia.com", count: int | None = None,
        version: str = "v1", **kw: Any) -> JSON:
    return {"name": name, **device(version, device_class, count, **kw)}


def judged(params: JSON, obj: JSON, namespace: str = "ml",
           dra_settings: JSON | None = None) -> list[policy.Violation]:
    """The violations of `obj` created in `namespace`."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    return kinds.violations(DraClaims, params, obj, namespace, dra_settings=dra_settings)


def found(params: JSON, obj: JSON, namespace: str = "ml",
          dra_settings: JSON | None = None) -> list[str]:
    """The `what` of each violation (their paths are checked where they matter)."""
    return [v.what for v in judged(params, obj, namespace, dra_settings)]


def paths(params: JSON, obj: JSON, namespace: str = "ml") -> list[str]:
    return [v.path for v in judged(params, obj, namespace)]


# -- every API shape -----------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("make", [claim, template], ids=["claim", "template"])
def test_every_version_and_kind_is_read_at_its_own_field(version: str, make: Any) -> None:
    obj = make("c", gpu("ok", count=2, version=version),
               gpu("nic", "rdma.example.com", version=version), version=version)
    spec = "spec.spec" if make is template else "spec"
    pointer = "/spec/spec" if make is template else "/spec"
    nested = NESTED[version]
    assert found(NVIDIA, obj) == [
        f"request 'nic' ({spec}.devices.requests[1].{nested}deviceClassName) names device class "
        f"rdma.example.com, which is not allowed in namespace ml (allowed: gpu.nvidia.com, "
        f"mig.nvidia.com)"]
    assert paths(NVIDIA, obj) == [
        f"{pointer}/devices/requests/1/{nested.replace('.', '/')}deviceClassName"]
    assert found({}, obj) == [], "no params: any class and any count"


@pytest.mark.parametrize("version", VERSIONS)
def test_counts_are_read_in_every_version(version: str) -> None:
    obj = claim("c", gpu(count=9, version=version), version=version)
    assert found(NVIDIA, obj) == [
        f"request 'gpu' (spec.devices.requests[0].{NESTED[version]}count) asks for 9 devices "
        f"of gpu.nvidia.com; at most 8 are allowed per request in namespace ml"]


@pytest.mark.corpus
def test_the_corpus_shapes_are_the_ones_read(shared_dir: Path) -> None:
    """NVIDIA's DRA demo: a v1beta1 template with the request's fields on the request."""
    path = shared_dir / "corpus" / "pod" / "dra-gpu-test-count-resourceclaim-multidoc.yaml"
    (template_obj,) = [o for o in load_manifests(path) if o["kind"] == dra.TEMPLATE]
    assert found(NVIDIA, template_obj, "gpu-test1") == []
    assert found({"maxPerRequest": 1}, template_obj, "gpu-test1") == [
        "request 'gpu' (spec.spec.devices.requests[0].count) asks for 2 devices of "
        "gpu.nvidia.com; at most 1 are allowed per request in namespace gpu-test1"]
    assert found({"namespaces": {"gpu-*": {"deviceClasses": ["mig.nvidia.com"]}}},
                 template_obj, "gpu-test1")[0].startswith(
        "request 'gpu' (spec.spec.devices.requests[0].deviceClassName) names device class "
        "gpu.nvidia.com, which is not allowed in namespace gpu-test1")


@pytest.mark.corpus
def test_every_dra_object_of_the_corpus_passes_the_example_config(shared_dir: Path) -> None:
    """The corpus' claims under the NVIDIA settings of examples/mlgate.yaml: allowed; its
    DeviceClasses and pods are not what dra-claims judges."""
    cfg = config.load(EXAMPLES / "mlgate.yaml", environ={})
    params = cfg.policies["dra-claims"].params
    judged = 0
    for path in sorted((shared_dir / "corpus").rglob("*.yaml")):
        for obj in load_manifests(path):
            if obj.get("kind") in (dra.CLAIM, dra.TEMPLATE):
                judged += 1
                namespace = obj["metadata"].get("namespace", "default")
                assert found(params, obj, namespace) == [], path
    assert judged >= 1


# -- firstAvailable ------------------------------------------------------------------
def test_each_first_available_alternative_is_judged_and_named() -> None:
    either = {"name": "accel", "firstAvailable": [
        {"name": "whole", "deviceClassName": "gpu.nvidia.com", "count": 12},
        {"name": "fpga", "deviceClassName": "fpga.example.com", "count": 1}]}
    obj = template("either", either)
    assert found(NVIDIA, obj) == [
        "sub-request 'whole' of request 'accel' (spec.spec.devices.requests[0]."
        "firstAvailable[0].count) asks for 12 devices of gpu.nvidia.com; at most 8 are "
        "allowed per request in namespace ml",
        "sub-request 'fpga' of request 'accel' (spec.spec.devices.requests[0]."
        "firstAvailable[1].deviceClassName) names device class fpga.example.com, which is "
        "not allowed in namespace ml (allowed: gpu.nvidia.com, mig.nvidia.com)"]
    assert paths(NVIDIA, obj) == ["/spec/spec/devices/requests/0/firstAvailable/0/count",
                                  "/spec/spec/devices/requests/0/firstAvailable/1/"
                                  "deviceClassName"]


def test_a_first_available_request_counts_as_its_largest_alternative_per_claim() -> None:
    either = {"name": "accel", "firstAvailable": [
        {"name": "whole", "deviceClassName": "gpu.nvidia.com", "count": 4},
        {"name": "slices", "deviceClassName": "mig.nvidia.com", "count": 6}]}
    obj = claim("c", either, gpu("more", count=2))
    assert found({"maxPerClaim": 8}, obj) == []
    assert found({"maxPerClaim": 7}, obj) == [
        "the claim asks for 8 devices in total (request 'accel': 6; request 'more': 2); at "
        "most 7 are allowed per claim in namespace ml"]
    assert paths({"maxPerClaim": 7}, obj) == ["/spec/devices/requests"]


# -- counts --------------------------------------------------------------------------
def test_count_defaults_to_one_device() -> None:
    obj = claim("c", gpu("a"), gpu("b"), gpu("c"))
    assert found({"maxPerRequest": 1, "maxPerClaim": 3}, obj) == []
    assert found({"maxPerClaim": 2}, obj) == [
        "the claim asks for 3 devices in total (request 'a': 1; request 'b': 1; request "
        "'c': 1); at most 2 are allowed per claim in namespace ml"]


def test_a_template_says_what_each_claim_made_from_it_asks() -> None:
    obj = template("t", gpu("a", count=5), gpu("b", "mig.nvidia.com", count=5))
    assert found(NVIDIA, obj) == [
        "each claim made from the template asks for 10 devices in total (request 'a': 5; "
        "request 'b': 5); at most 8 are allowed per claim in namespace ml"]


def test_one_request_over_both_caps_is_said_once() -> None:
    obj = claim("c", gpu(count=16))
    assert found(NVIDIA, obj) == [
        "request 'gpu' (spec.devices.requests[0].exactly.count) asks for 16 devices of "
        "gpu.nvidia.com; at most 8 are allowed per request in namespace ml"]
    # a claim cap below the request cap still speaks for itself
    assert found({"maxPerRequest": 16, "maxPerClaim": 8}, obj) == [
        "the claim asks for 16 devices in total (request 'gpu': 16); at most 8 are allowed "
        "per claim in namespace ml"]


# -- allocationMode All ---------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_allocation_mode_all_is_refused_unless_allowed(version: str) -> None:
    obj = claim("c", gpu(mode="All", version=version), version=version)
    assert found({}, obj) == [
        f"request 'gpu' (spec.devices.requests[0].{NESTED[version]}allocationMode) asks for "
        f"every matching gpu.nvidia.com device on the node (allocationMode: All), which is "
        f"not allowed in namespace ml"]
    assert found({"allocationModeAll": True}, obj) == []


def test_allocation_mode_all_where_a_cap_applies_needs_count_all() -> None:
    obj = claim("c", gpu(mode="All"))
    params = {"allocationModeAll": True, "maxPerRequest": 8, "maxPerClaim": 8}
    assert found(params, obj) == [
        "request 'gpu' (spec.devices.requests[0].exactly.allocationMode) asks for every "
        "matching gpu.nvidia.com device on the node (allocationMode: All), which cannot be "
        "held to the cap of 8 devices per request and 8 devices per claim in namespace ml"]
    assert found(params, obj, dra_settings={"countAll": 8}) == []
    assert found(params, obj, dra_settings={"countAll": 16}) == [
        "request 'gpu' (spec.devices.requests[0].exactly.allocationMode) asks for 16 devices "
        "of gpu.nvidia.com (allocationMode: All, counted as dra.countAll 16); at most 8 are "
        "allowed per request in namespace ml"]


# -- adminAccess ---------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_admin_access_only_in_the_configured_namespaces(version: str) -> None:
    obj = template("t", gpu(count=1, admin=True, version=version), version=version)
    field = f"spec.spec.devices.requests[0].{NESTED[version]}adminAccess"
    assert found({}, obj, "team-a") == [
        f"request 'gpu' ({field}) asks for admin access to the devices (adminAccess: true: "
        f"access to devices other pods are using), which is allowed in no namespace"]
    params = {"adminAccessNamespaces": ["gpu-monitoring", "ops-*"]}
    assert found(params, obj, "gpu-monitoring") == []
    assert found(params, obj, "ops-dcgm") == []
    assert found(params, obj, "team-a") == [
        f"request 'gpu' ({field}) asks for admin access to the devices (adminAccess: true: "
        f"access to devices other pods are using), which is allowed only in namespaces "
        f"gpu-monitoring, ops-*, not in namespace team-a"]
    assert paths(params, obj, "team-a") == [
        f"/spec/spec/devices/requests/0/{NESTED[version].replace('.', '/')}adminAccess"]


def test_admin_access_false_is_no_admin_access() -> None:
    request = gpu(count=1)
    request["exactly"]["adminAccess"] = False
    assert found({}, claim("c", request)) == []


# -- namespaces ----------------------------------------------------------------------
def test_the_first_matching_namespace_glob_overrides_only_what_it_sets() -> None:
    params = {**NVIDIA, "namespaces": {
        "dev-*": {"deviceClasses": ["mig.nvidia.com"]},
        "dev-big": {"maxPerClaim": 100},  # never reached: dev-* matches first
        "gpu-monitoring": {"allocationModeAll": True, "maxPerRequest": None,
                           "maxPerClaim": None},
        "*": {"maxPerClaim": 4}}}
    whole = claim("c", gpu(count=2))
    assert found(params, whole, "prod") == []
    assert found(params, whole, "dev-big")[0].startswith(
        "request 'gpu' (spec.devices.requests[0].exactly.deviceClassName) names device class "
        "gpu.nvidia.com, which is not allowed in namespace dev-big (allowed: mig.nvidia.com)")
    slices = claim("c", gpu(device_class="mig.nvidia.com", count=6))
    assert found(params, slices, "dev-a") == [], "dev-* keeps the top-level caps (8)"
    assert found(params, slices, "research") == [
        "the claim asks for 6 devices in total (request 'gpu': 6); at most 4 are allowed per "
        "claim in namespace research"]
    everything = claim("c", gpu(mode="All"))
    assert found(params, everything, "gpu-monitoring") == [], "null removes the caps there"


def test_an_empty_class_list_allows_no_class() -> None:
    obj = claim("c", gpu(count=1))
    (what,) = found({"namespaces": {"sandbox": {"deviceClasses": []}}}, obj, "sandbox")
    assert what.endswith("which is not allowed in namespace sandbox (allowed: none)")
    (violation,) = judged({"deviceClasses": []}, obj)
    assert violation.fix == "claim devices in a namespace that allows them"


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="maxPerRequest"):
        DraClaims.params_model.model_validate({"maxPerRequest": 0})
    with pytest.raises(ValueError, match="adminAcessNamespaces"):
        DraClaims.params_model.model_validate({"adminAcessNamespaces": ["x"]})


def test_field_names() -> None:
    assert field_name("/spec/devices/requests/0/exactly/count") == \
        "spec.devices.requests[0].exactly.count"
    assert field_name("/spec/spec/devices/requests/12/firstAvailable/3/deviceClassName") == \
        "spec.spec.devices.requests[12].firstAvailable[3].deviceClassName"


# -- through the engine: messages, kinds, UPDATE -------------------------------------
def build(policies: JSON, dra_settings: JSON | None = None) -> engine.Engine:
    settings: JSON = {name: {"mode": "off"} for name in config.DEFAULT_POLICIES}
    settings.update(policies)
    top: JSON = {"policies": settings}
    if dra_settings is not None:
        top["dra"] = dra_settings
    return engine.Engine.build(config.from_mapping(top, environ={}))


def evaluate(eng: engine.Engine, review: JSON, phase: str = engine.VALIDATE) -> Any:
    request = admission.parse(json.dumps(review).encode())
    return asyncio.run(eng.evaluate(request, phase))


def test_the_message_names_the_object_request_field_and_fix() -> None:
    eng = build({"dra-claims": {"params": {"adminAccessNamespaces": ["gpu-monitoring"]}}})
    obj = claim("debug", gpu(count=1, admin=True), namespace="team-a")
    decision = evaluate(eng, factories.admission_review(obj))
    assert not decision.allowed
    assert decision.message == (
        "[dra-claims] ResourceClaim team-a/debug: request 'gpu' "
        "(spec.devices.requests[0].exactly.adminAccess) asks for admin access to the devices "
        "(adminAccess: true: access to devices other pods are using), which is allowed only "
        "in namespaces gpu-monitoring, not in namespace team-a (remove adminAccess: true; "
        "monitoring and debugging claims belong in a namespace listed in dra-claims "
        "adminAccessNamespaces)")
    assert [f.path for f in decision.findings] == ["/spec/devices/requests/0/exactly/adminAccess"]
    allowed = claim("debug", gpu(count=1, admin=True), namespace="gpu-monitoring")
    assert evaluate(eng, factories.admission_review(allowed)).allowed


def test_count_all_comes_from_the_dra_settings() -> None:
    params = {"allocationModeAll": True, "maxPerRequest": 8}
    obj = claim("node", gpu(mode="All"))
    assert not evaluate(build({"dra-claims": {"params": params}}),
                        factories.admission_review(obj)).allowed
    assert evaluate(build({"dra-claims": {"params": params}}, {"countAll": 8}),
                    factories.admission_review(obj)).allowed


def test_dra_claims_judges_only_claims_and_templates() -> None:
    eng = build({"dra-claims": {}})
    pod = factories.pod(factories.pod_spec(factories.container()))
    decision = evaluate(eng, factories.admission_review(pod))
    assert decision.evaluated == [] and decision.allowed
    for obj in (claim("c", gpu(count=1)), template("t", gpu(count=1))):
        assert evaluate(eng, factories.admission_review(obj)).evaluated == [
            ("dra-claims", "enforce")]
    # named on a workload kind by match.kinds, it finds nothing to judge there
    eng = build({"dra-claims": {"match": {"kinds": ["Pod"]}}})
    decision = evaluate(eng, factories.admission_review(pod))
    assert decision.evaluated == [("dra-claims", "enforce")] and decision.findings == []


def test_an_update_keeps_an_old_violation_a_warning() -> None:
    """A claim admitted before the policy (or a change of it) can still get its labels and
    finalizers changed: the old violation warns, a new one denies."""
    eng = build({"dra-claims": {}})
    old = claim("c", gpu(count=1, admin=True))
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["example.com/keep"]
    decision = evaluate(eng, factories.admission_review(new, operation="UPDATE", old=old))
    assert decision.allowed and "already present before this update" in decision.warnings[0]
    worse = copy.deepcopy(new)
    worse["spec"]["devices"]["requests"].append(gpu("all", mode="All"))
    decision = evaluate(eng, factories.admission_review(worse, operation="UPDATE", old=old))
    assert not decision.allowed and "allocationMode: All" in decision.message


def test_claims_are_never_mutated() -> None:
    eng = build({"dra-claims": {}})
    decision = evaluate(eng, factories.admission_review(claim("c", gpu(count=1))),
                        engine.MUTATE)
    assert decision.allowed and decision.patch == [] and decision.evaluated == []


# -- no other policy judges or changes claims by accident ----------------------------
def example_engine() -> engine.Engine:
    """Every policy of examples/mlgate.yaml on (required-labels, default-labels, cel at
    object scope, pod-security, ...), the registry-bound ones left off."""
    return engine.Engine.build(config.load(EXAMPLES / "mlgate.yaml", environ={}))


@pytest.mark.parametrize("obj", [
    claim("bare", gpu(count=1), namespace="vision"),
    template("bare", gpu(count=1), namespace="vision"),
], ids=["claim", "template"])
def test_with_the_whole_library_on_only_dra_claims_sees_a_claim(obj: JSON) -> None:
    eng = example_engine()
    on = {a.name for a in eng.active if a.mode != "off"}
    assert {"required-labels", "default-labels", "cel", "cel-warn", "pod-security",
            "priority-class", "gpu-limits", "dra-claims"} <= on
    review = factories.admission_review(obj)
    mutated = evaluate(eng, review, engine.MUTATE)
    assert mutated.evaluated == [] and mutated.patch == [] and mutated.allowed
    validated = evaluate(eng, review)
    # required-labels asks every workload for `team`, and cel's object rule sees `object`:
    # neither judges the (unlabelled) claim
    assert validated.evaluated == [("dra-claims", "enforce")]
    assert validated.allowed and validated.warnings == []


@pytest.mark.parametrize("name", sorted(plugins.discover().policies))
def test_no_builtin_policy_but_dra_claims_names_kinds_without_pod_specs(name: str) -> None:
    cls = plugins.discover().policies[name]
    if name == "dra-claims":
        assert cls.default_kinds == ("resource.k8s.io/ResourceClaim",
                                     "resource.k8s.io/ResourceClaimTemplate")
    else:
        assert cls.default_kinds is None


def test_required_labels_default_labels_and_cel_skip_claims_unless_named() -> None:
    labels = {"params": {"labels": [{"key": "team"}]}}
    cel = {"params": {"rules": [{"name": "has-team", "scope": "object",
                                 "expression": "has(object.metadata.labels)"}]}}
    default_labels = {"params": {"queueNames": {"*": "q"},
                                 "queueKinds": ["Pod", "ResourceClaim"]}}
    obj = claim("c", gpu(count=1))
    eng = build({"required-labels": labels, "cel": cel, "default-labels": default_labels})
    review = factories.admission_review(obj)
    assert evaluate(eng, review).evaluated == []
    assert evaluate(eng, review, engine.MUTATE).patch == []
    # named in match.kinds, deliberately: then they judge (and label) claims like workloads
    claims = {"kinds": ["ResourceClaim"]}
    eng = build({"required-labels": {**labels, "match": claims}, "cel": {**cel, "match": claims},
                 "default-labels": {**default_labels, "match": claims}})
    decision = evaluate(eng, review)
    assert {f.policy for f in decision.findings} == {"required-labels", "cel"}
    mutated = evaluate(eng, review, engine.MUTATE)
    assert mutated.patch == [{"op": "add", "path": "/metadata/labels",
                              "value": {"kueue.x-k8s.io/queue-name": "q"}}]


def test_a_policy_naming_an_unknown_default_kind_does_not_load() -> None:
    with pytest.raises(TypeError, match="default_kinds: 'ResourceClaimz' is not a kind"):
        class Typo(policy.ValidatingPolicy[policy.Params]):
            name = "typo"
            default_kinds = ("ResourceClaimz",)

            def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
                return []


def test_mlgate_check_judges_the_claims_it_is_given(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`mlgate check` on a multi-document file: the template is judged, the pod too."""
    manifest = tmp_path / "dra.yaml"
    manifest.write_text(yaml.safe_dump_all([
        template("sixteen", gpu(count=16)),
        factories.pod(factories.pod_spec(factories.container()), name="p")]))
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({"policies": {"dra-claims": {"params": NVIDIA}}}))
    assert cli.main(["check", "--config", str(cfg), "-f", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "ResourceClaimTemplate sixteen: DENIED\n  deny: [dra-claims] ResourceClaimTemplate " \
        "ml/sixteen: request 'gpu' (spec.spec.devices.requests[0].exactly.count) asks for 16 " \
        "devices of gpu.nvidia.com; at most 8 are allowed per request in namespace ml (set " \
        "count to 8 or fewer, or split the devices over more claims and pods)" in out
    assert "Pod p: DENIED" in out and "[dra-claims] Pod" not in out  # require-limits

"""Policy exceptions: configuration errors with key paths, and what they do to a decision."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import factories
from tests.factories import container, pod, pod_spec
from tests.unit.test_engine import build, evaluate
from webhook import admission, config, engine, errors, exceptions

TODAY = dt.datetime.now(dt.UTC).date()
NEXT_MONTH = (TODAY + dt.timedelta(days=30)).isoformat()
NEXT_WEEK = (TODAY + dt.timedelta(days=7)).isoformat()
YESTERDAY = (TODAY - dt.timedelta(days=1)).isoformat()


def exception(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "policies": ["require-limits"], "match": {"namespaces": ["ml"], "names": ["train*"]},
        "reason": "legacy trainer, limits come with the v2 image", "owner": "team-a",
        "expires": NEXT_MONTH}
    entry.update(overrides)
    return entry


def unlimited(name: str = "train", namespace: str = "ml", **kw: Any) -> dict[str, Any]:
    return pod(pod_spec(container("trainer")), name=name, namespace=namespace, **kw)


def validate(obj: dict[str, Any], **top: Any) -> Any:
    return evaluate(build(**top), factories.admission_review(obj), engine.VALIDATE)


# -- configuration -----------------------------------------------------------------------
@pytest.mark.parametrize(("entry", "message"), [
    (exception(policies=["require-limitz"]),
     "exceptions.legacy.policies.0: 'require-limitz' is not a configured policy"),
    (exception(policies=[]), "exceptions.legacy.policies: List should have at least 1 item"),
    (exception(expires="next tuesday"),
     "exceptions.legacy.expires: 'next tuesday' is not a date; write it like 2026-12-31"),
    (exception(expires="2026-02-30"), "exceptions.legacy.expires: '2026-02-30' is not a date"),
    (exception(match={}), "exceptions.legacy.match: an empty match would cover every object"),
    (exception(match={"namespaces": []}), "exceptions.legacy.match: an empty match"),
    (exception(match={"kinds": ["Pood"]}), "exceptions.legacy.match.kinds.0"),
    (exception(reason=" "), "exceptions.legacy.reason: must not be empty"),
    ({k: v for k, v in exception().items() if k != "owner"},
     "exceptions.legacy.owner: Field required"),
    (exception(match={"names": ["x"]}, contianers=["a"]), "exceptions.legacy.contianers"),
])
def test_bad_exceptions_are_load_errors_naming_the_key_path(
        tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    path = tmp_path / "mlgate.yaml"
    path.write_text(yaml.safe_dump({"exceptions": {"legacy": entry}}))
    with pytest.raises(errors.ConfigError) as caught:
        config.load(path, environ={})
    assert message in str(caught.value)


def test_a_name_the_annotation_cannot_list_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match="exceptions.a,b: a name must not contain"):
        config.from_mapping({"exceptions": {"a,b": exception()}}, environ={})


def test_expires_reads_yaml_dates_and_times(tmp_path: Path) -> None:
    path = tmp_path / "mlgate.yaml"
    path.write_text("exceptions:\n"
                    "  a: {policies: [require-limits], match: {names: [x]}, reason: r,\n"
                    "      owner: o, expires: 2030-01-31}\n"
                    "  b: {policies: [require-limits], match: {names: [x]}, reason: r,\n"
                    "      owner: o, expires: '2030-01-31T18:30:00+02:00'}\n")
    cfg = config.load(path, environ={})
    assert cfg.exceptions["a"].expires == dt.datetime(2030, 1, 31, tzinfo=dt.UTC)
    assert cfg.exceptions["a"].until == "2030-01-31"
    assert cfg.exceptions["b"].until == "2030-01-31T16:30:00Z"


def test_the_environment_can_move_an_expiry() -> None:
    cfg = config.from_mapping({"exceptions": {"legacy-trainer": exception()}}, environ={
        "MLGATE_EXCEPTIONS__LEGACY_TRAINER__EXPIRES": "2031-05-01"})
    assert cfg.exceptions["legacy-trainer"].until == "2031-05-01"


# -- evaluation --------------------------------------------------------------------------
def test_an_exception_lets_the_findings_through_as_warnings_naming_it() -> None:
    decision = validate(unlimited(), exceptions={"legacy": exception()})
    assert decision.allowed, decision.message
    assert decision.exceptions == ["legacy"]
    assert len(decision.warnings) == 2  # no cpu limit, no memory limit
    assert all(w.startswith(f"[require-limits] allowed by exception legacy (owner team-a, "
                            f'expires {NEXT_MONTH}): Pod ml/train /spec container "trainer": ')
               for w in decision.warnings)
    record = decision.record()
    assert record["exceptions"] == ["legacy"]
    assert {v["exception"] for v in record["violations"]} == {"legacy"}
    assert decision.audit_annotations()["exceptions"] == "legacy"


def test_the_exception_survives_the_cap_on_warning_length() -> None:
    decision = validate(unlimited(name="train-" + "x" * 240),
                        exceptions={"legacy": exception()})
    capped = admission.cap_warnings(decision.warnings)
    assert all(len(w) <= 256 and w.endswith("...") for w in capped)
    assert all(f"allowed by exception legacy (owner team-a, expires {NEXT_MONTH})" in w
               for w in capped)


def test_an_expired_exception_stops_applying_and_is_named_in_the_denial() -> None:
    decision = validate(unlimited(), exceptions={"legacy": exception(expires=YESTERDAY)})
    assert not decision.allowed
    assert decision.exceptions == []
    assert f"[exception legacy expired {YESTERDAY}]" in decision.message


def test_expiry_is_read_at_each_request_without_a_reload() -> None:
    eng = build(exceptions={"legacy": exception(expires="2030-01-01T00:00:00Z")})
    review = factories.admission_review(unlimited())
    cutoff = eng.config.exceptions["legacy"].expires.timestamp()
    eng.clock = lambda: cutoff - 1
    assert evaluate(eng, review, engine.VALIDATE).allowed
    eng.clock = lambda: cutoff  # the same engine, a request at the expiry: denied
    late = evaluate(eng, review, engine.VALIDATE)
    assert not late.allowed and late.exceptions == []
    assert "[exception legacy expired 2030-01-01]" in late.message


@pytest.mark.parametrize(("obj", "match"), [
    (unlimited(namespace="other"), {"namespaces": ["ml"]}),
    (unlimited(name="serve"), {"names": ["train*"]}),
    (unlimited(labels={"team": "b"}), {"objectSelector": {"matchLabels": {"team": "a"}}}),
    (unlimited(), {"kinds": ["Deployment"]}),
])
def test_objects_outside_the_match_are_still_denied(obj: dict[str, Any],
                                                    match: dict[str, Any]) -> None:
    decision = validate(obj, exceptions={"legacy": exception(match=match)})
    assert not decision.allowed and decision.exceptions == []


def test_a_label_selector_and_kind_match() -> None:
    match = {"kinds": ["Pod"], "objectSelector": {"matchLabels": {"team": "a"}}}
    decision = validate(unlimited(labels={"team": "a"}),
                        exceptions={"legacy": exception(match=match)})
    assert decision.allowed and decision.exceptions == ["legacy"]


def test_containers_narrow_an_exception_to_their_findings() -> None:
    obj = pod(pod_spec(container("trainer"), container("sidecar")), name="train")
    decision = validate(obj, exceptions={"legacy": exception(containers=["train*"])})
    assert not decision.allowed
    assert 'container "sidecar"' in decision.message
    assert 'container "trainer"' not in decision.message
    assert all('container "trainer"' in w for w in decision.warnings)


def test_an_exception_for_another_policy_changes_nothing() -> None:
    policies = {"cel": {"mode": "enforce", "params": {"rules": [
        {"name": "r", "expression": "false", "message": "never"}]}}}
    decision = validate(unlimited(), policies=policies,
                        exceptions={"legacy": exception(policies=["cel"])})
    assert not decision.allowed
    assert "[require-limits]" in decision.message and "[cel]" not in decision.message
    assert decision.exceptions == ["legacy"]


def test_mutations_are_never_excepted() -> None:
    gpu = pod(pod_spec(container("trainer", limits={"nvidia.com/gpu": "1"})), name="train")
    eng = build(exceptions={"legacy": exception(policies=["gpu-tolerations"])})
    mutated = evaluate(eng, factories.admission_review(gpu), engine.MUTATE)
    assert "gpu-tolerations" in mutated.mutated_by and mutated.exceptions == []


def test_the_annotation_option_requires_the_object_to_name_the_exception() -> None:
    top = {"exceptions": {"legacy": exception()}, "exceptionsRequireAnnotation": True}
    assert not validate(unlimited(), **top).allowed
    named = unlimited()
    named["metadata"]["annotations"] = {exceptions.ANNOTATION: "other, legacy"}
    decision = validate(named, **top)
    assert decision.allowed and decision.exceptions == ["legacy"]
    assert any("annotation mlgate.io/exception names other, which is not a configured "
               "exception (configured: legacy)" in w for w in decision.warnings)


def test_summary_lists_exceptions_expiring_within_14_days() -> None:
    cfg = config.from_mapping({"exceptions": {
        "later": exception(), "soon": exception(expires=NEXT_WEEK),
        "gone": exception(expires=YESTERDAY)}}, environ={})
    rows = exceptions.summary(cfg.exceptions, dt.datetime.now(dt.UTC).timestamp())
    assert [(r["name"], r["state"]) for r in rows] == [
        ("gone", "expired"), ("soon", "expiring"), ("later", "active")]
    assert rows[1]["days_left"] in (6, 7) and rows[1]["owner"] == "team-a"


def test_the_readme_example_is_a_valid_configuration() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exceptions", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    cfg = config.from_mapping(yaml.safe_load(block.group(1)), environ={})
    assert cfg.exceptions["legacy-trainer"].until == "2026-12-31"
    assert cfg.exceptions["legacy-trainer"].covers(
        "", "Pod", "team-a", "legacy-train-0", {"app": "legacy-train"})

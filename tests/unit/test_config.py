"""Configuration: validation with key paths, environment overrides, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook import config, errors, schema


def test_no_file_gives_the_default_policies() -> None:
    cfg = config.load(None, environ={})
    assert list(cfg.policies) == ["gpu-tolerations", "default-resources", "require-limits"]
    assert all(p.mode == "enforce" and p.failure == "fail" for p in cfg.policies.values())
    assert "kube-system" in cfg.exemptions.namespaces


def test_file_settings_override_defaults_and_add_policies(tmp_path: Path) -> None:
    path = tmp_path / "mlgate.yaml"
    path.write_text("""
policies:
  require-limits:
    mode: warn
    match: {namespaces: {include: ["*"], exclude: ["sandbox-*"]}}
    timeout: 500ms
  gpu-tolerations: {mode: "off"}
""")
    cfg = config.load(path, environ={})
    assert cfg.policies["require-limits"].mode == "warn"
    assert cfg.policies["require-limits"].timeout == 0.5
    assert cfg.policies["gpu-tolerations"].mode == "off"
    assert cfg.policies["default-resources"].mode == "enforce"


@pytest.mark.parametrize(("text", "message"), [
    ("policies: {require-limits: {mode: block}}", "policies.require-limits.mode"),
    ("policies: {require-limits: {failure: maybe}}", "policies.require-limits.failure"),
    ("policies: {require-limits: {timeout: soon}}", "policies.require-limits.timeout"),
    ("exemptions: {namespaces: kube-system}", "exemptions.namespaces"),
    ("exemptoins: {}", "exemptoins"),
    ("policies: [a, b]", "policies: must be a mapping"),
    ("- just a list", "top level"),
    ("policies: {require-limits: {match: {operations: [DELETE]}}}",
     "policies.require-limits.match.operations.0"),
    ("deadline: 0s", "deadline"),
    ("policyThreads: 0", "policyThreads"),
    ("audit: {maxQueries: 0}", "audit.maxQueries"),
    ("audit: {queryTimeout: 0s}", "audit.queryTimeout"),
])
def test_errors_name_the_key_path(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(errors.ConfigError) as caught:
        config.load(path, environ={})
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("policies: {")
    with pytest.raises(errors.ConfigError, match="not valid YAML"):
        config.load(path, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read config file"):
        config.load(tmp_path / "absent.yaml", environ={})


def test_environment_overrides() -> None:
    cfg = config.load(None, environ={
        "MLGATE_POLICIES__REQUIRE_LIMITS__MODE": "warn",
        "MLGATE_POLICIES__REQUIRE_LIMITS__PARAMS__RESOURCES": "[memory]",
        "MLGATE_EXEMPTIONS__USERS": "[ci-bot]",
        "MLGATE_DEADLINE": "3s",
        "MLGATE_MUTATE_ON_UPDATE": "[PyTorchJob]",
        "MLGATE_CONFIG": "/ignored/here",
        "OTHER": "ignored",
    })
    assert cfg.policies["require-limits"].mode == "warn"
    assert cfg.policies["require-limits"].params == {"resources": ["memory"]}
    assert cfg.exemptions.users == ["ci-bot"]
    assert cfg.deadline == 3.0
    assert cfg.mutateOnUpdate == ["PyTorchJob"]


def test_environment_errors_are_config_errors() -> None:
    with pytest.raises(errors.ConfigError, match="policies.require-limits.mode"):
        config.load(None, environ={"MLGATE_POLICIES__REQUIRE_LIMITS__MODE": "loud"})


@pytest.mark.parametrize(("value", "seconds"), [("500ms", 0.5), ("2s", 2), ("10m", 600),
                                                ("1h", 3600), ("30d", 2592000), (3, 3.0)])
def test_durations(value: object, seconds: float) -> None:
    assert schema.parse_duration(value) == seconds


def test_label_selector_semantics() -> None:
    selector = schema.LabelSelector.model_validate({
        "matchLabels": {"team": "ml"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu", "tpu"]},
                             {"key": "legacy", "operator": "DoesNotExist"}]})
    assert selector.matches({"team": "ml", "tier": "gpu"})
    assert not selector.matches({"team": "ml", "tier": "cpu"})
    assert not selector.matches({"team": "ml", "tier": "gpu", "legacy": "1"})
    assert not selector.matches({"tier": "gpu"})


def test_relative_policy_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "mlgate.yaml"
    path.write_text("policyPaths: [modules, /abs/dir]\n")
    cfg = config.load(path, environ={})
    assert cfg.policyPaths == [str(tmp_path / "conf" / "modules"), "/abs/dir"]


@pytest.mark.parametrize(("data", "message"), [
    ({"policies": {"require-limits": {"match": {"kinds": ["Deploymnet"]}}}},
     "policies.require-limits.match.kinds.0: 'Deploymnet' is not a kind mlgate supports; "
     "did you mean 'Deployment'?"),
    ({"exemptions": {"kinds": ["batch/Jbo"]}},
     "exemptions.kinds.0: 'batch/Jbo' is not a kind mlgate supports; did you mean 'batch/Job'?"),
    ({"mutateOnUpdate": ["Widget"]},
     "mutateOnUpdate.0: 'Widget' is not a kind mlgate supports (write Kind or group/Kind)"),
])
def test_a_kind_outside_the_kind_table_is_refused_with_its_key_path(
        data: dict[str, object], message: str) -> None:
    # Before, such a kind silently matched no request: the policy never ran.
    with pytest.raises(errors.ConfigError) as caught:
        config.from_mapping(data, environ={})
    assert str(caught.value) == message


def test_kinds_in_policy_params_are_checked_too() -> None:
    from webhook import engine

    cfg = config.from_mapping({"policies": {"require-probes": {
        "params": {"kinds": ["Deployment", "apps/StatefulSet", "InferenceServce"]}}}}, environ={})
    with pytest.raises(errors.ConfigError,
                       match=r"policies\.require-probes\.params\.kinds\.2: 'InferenceServce' is "
                             r"not a kind mlgate supports; did you mean 'InferenceService'\?"):
        engine.Engine.build(cfg)


def test_a_misspelt_group_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match=r"'bacth/Job' is not a kind mlgate supports; "
                                                 r"did you mean 'batch/Job'\?"):
        config.from_mapping({"mutateOnUpdate": ["bacth/Job"]}, environ={})

"""Finding policies: entry points (the built-ins go through them) and policy directories."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from tests import factories
from webhook import admission, config, engine, errors, plugins

MODULE = textwrap.dedent('''
    from webhook import policy

    class Params(policy.Params):
        forbidden: str = "bad"

    class NoBadNames(policy.ValidatingPolicy[Params]):
        """Containers must not be named like the forbidden word."""
        name = "no-bad-names"

        def validate(self, workload):
            for pod, container in workload.containers():
                if container.name == self.params.forbidden:
                    yield policy.Violation.at_container(pod, container, "forbidden name",
                                                        "rename the container", "name")
''')

# The same module written against the contract before policies were generic.
OLD_MODULE = textwrap.dedent('''
    from webhook import policy

    class Params(policy.Params):
        forbidden: str = "bad"

    class NoBadNames(policy.Policy):
        name = "no-bad-names"
        phase = "validate"
        Params = Params

        def validate(self, workload, params):
            return []
''')


def test_builtins_come_through_the_entry_point_group() -> None:
    catalogue = plugins.discover()
    for name in ("gpu-tolerations", "default-resources", "require-limits"):
        assert name in catalogue.policies
        assert catalogue.sources[name].startswith(f"entry point {name} = policies.")


def test_directory_policies_load_and_run(tmp_path: Path) -> None:
    (tmp_path / "names.py").write_text(MODULE)
    cfg = config.from_mapping({"policyPaths": [str(tmp_path)],
                               "policies": {"no-bad-names": {"params": {"forbidden": "x"}},
                                            "require-limits": {"mode": "off"}}}, environ={})
    eng = engine.Engine.build(cfg)
    obj = factories.pod(factories.pod_spec(factories.container("x")))
    request = admission.parse(json.dumps(factories.admission_review(obj)).encode())
    decision = asyncio.run(eng.evaluate(request, engine.VALIDATE))
    assert decision.message == ('[no-bad-names] Pod ml/train /spec container "x": forbidden name '
                                "(rename the container)")


def test_broken_module_is_an_error_only_when_enabled(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import does_not_exist\n")
    catalogue = plugins.discover([str(tmp_path)])
    assert any("broken.py" in key for key in catalogue.failures)
    engine.Engine.build(config.from_mapping({"policyPaths": [str(tmp_path)]}, environ={}))
    with pytest.raises(errors.PluginError) as caught:
        engine.Engine.build(config.from_mapping(
            {"policyPaths": [str(tmp_path)], "policies": {"from-broken": {}}}, environ={}))
    assert "from-broken" in str(caught.value) and "does_not_exist" in str(caught.value)


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(errors.PluginError, match="not a directory"):
        plugins.discover([str(tmp_path / "nope")])


def test_duplicate_names_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(MODULE)
    (tmp_path / "b.py").write_text(MODULE)
    with pytest.raises(errors.PluginError, match="two policies are named 'no-bad-names'"):
        plugins.discover([str(tmp_path)])


def test_a_module_written_for_the_old_contract_says_what_to_change(tmp_path: Path) -> None:
    (tmp_path / "names.py").write_text(OLD_MODULE)
    with pytest.raises(errors.PluginError) as caught:
        engine.Engine.build(config.from_mapping(
            {"policyPaths": [str(tmp_path)], "policies": {"no-bad-names": {}}}, environ={}))
    message = str(caught.value)
    assert "names.py" in message and "old mlgate policy contract" in message
    for change in ("remove `Params = ...`", "remove `phase = ...`",
                   "drop the params argument of validate()"):
        assert change in message


def test_a_class_that_is_neither_mutating_nor_validating_is_refused() -> None:
    from webhook import policy

    class Neither(policy.Policy[policy.Params]):
        name = "neither"

    with pytest.raises(errors.PluginError, match="neither MutatingPolicy"):
        plugins.Catalogue().add(Neither, "tests")

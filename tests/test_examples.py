"""`mlgate check` over examples/manifests with examples/mlgate.yaml gives the expected verdicts.

The example configuration turns the whole library on; each manifest says in its first line
what should happen to it, and this table is the same statement in code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# file -> (verdict, policies that deny it, policies that warn about it)
EXPECTED: dict[str, tuple[str, set[str], set[str]]] = {
    "good/pytorchjob-gpu.yaml": ("allowed", set(), set()),
    "good/inference-restricted.yaml": ("allowed", set(), set()),
    "good/raycluster.yaml": ("allowed", set(), set()),
    "bad/privileged-pod.yaml": ("denied", {"pod-security", "cel"}, set()),
    "bad/pytorchjob-too-many-gpus.yaml": ("denied", {"gpu-limits"}, set()),
    "bad/pytorchjob-dra-too-many-gpus.yaml": ("denied", {"gpu-limits"}, set()),
    "bad/jobset-no-team.yaml": ("denied", {"cel", "required-labels", "require-limits"}, set()),
    "bad/serving-not-hardened.yaml": ("denied", {"pod-security"}, set()),
    "bad/pytorchjob-warned-and-denied.yaml": ("denied", {"pod-security"}, {"cel-warn"}),
}
_POLICY = re.compile(r"^\[([a-z0-9-]+)\]")


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, object]]:
    run = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "check", "--config", "mlgate.yaml",
         "-f", "manifests", "-o", "json"],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, f"some manifests are denied, so exit code 1: {run.stderr}"
    # one workload per file; objects that are not workloads (claim templates) are skipped
    return {str(Path(r["file"]).relative_to("manifests")): r for r in json.loads(run.stdout)
            if not r["skipped"]}


def test_every_example_manifest_has_an_expectation(results: dict[str, dict[str, object]]) -> None:
    on_disk = {str(p.relative_to(EXAMPLES / "manifests"))
               for p in (EXAMPLES / "manifests").rglob("*.yaml")}
    assert on_disk == set(EXPECTED) == set(results)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_verdict(name: str, results: dict[str, dict[str, object]]) -> None:
    verdict, deny, warn = EXPECTED[name]
    result = results[name]
    violations = result["violations"]
    warnings = result["warnings"]
    assert isinstance(violations, list) and isinstance(warnings, list)
    assert result["verdict"] == verdict, violations
    assert {m.group(1) for v in violations if (m := _POLICY.match(v))} == deny
    assert {m.group(1) for w in warnings if (m := _POLICY.match(w))} == warn
    if name.startswith("good/"):
        assert result["patch"], "the mutators complete the good manifests"


def test_the_example_config_enables_every_policy_mlgate_ships() -> None:
    from webhook import config, plugins

    cfg = config.load(EXAMPLES / "mlgate.yaml", environ={})
    missing = set(plugins.discover().policies) - set(cfg.policies)
    assert not missing, f"examples/mlgate.yaml does not configure {sorted(missing)}"

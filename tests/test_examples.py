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

# "file: Kind name" -> (verdict, policies that deny it, policies that warn about it)
EXPECTED: dict[str, tuple[str, set[str], set[str]]] = {
    "good/pytorchjob-gpu.yaml: PyTorchJob resnet50": ("allowed", set(), set()),
    "good/inference-restricted.yaml: Deployment llm-server": ("allowed", set(), set()),
    "good/raycluster.yaml: RayCluster tune": ("allowed", set(), set()),
    "good/pytorchjob-dra-gpus.yaml: ResourceClaimTemplate two-gpus": ("allowed", set(), set()),
    "good/pytorchjob-dra-gpus.yaml: PyTorchJob finetune-dra": ("allowed", set(), set()),
    "good/dra-gpu-monitoring-claim.yaml: ResourceClaimTemplate all-gpus-admin": (
        "allowed", set(), set()),
    "bad/privileged-pod.yaml: Pod debug-node": ("denied", {"pod-security", "cel"}, set()),
    "bad/pytorchjob-too-many-gpus.yaml: PyTorchJob greedy": ("denied", {"gpu-limits"}, set()),
    "bad/pytorchjob-dra-too-many-gpus.yaml: ResourceClaimTemplate sixteen-gpus": (
        "denied", {"dra-claims"}, set()),
    "bad/pytorchjob-dra-too-many-gpus.yaml: PyTorchJob greedy-dra": (
        "denied", {"gpu-limits"}, set()),
    "bad/dra-claim-admin-access.yaml: ResourceClaim peek-at-all-gpus": (
        "denied", {"dra-claims"}, set()),
    "bad/jobset-no-team.yaml: JobSet anonymous": (
        "denied", {"cel", "required-labels", "require-limits"}, set()),
    "bad/serving-not-hardened.yaml: Deployment quick-demo": ("denied", {"pod-security"}, set()),
    "bad/pytorchjob-warned-and-denied.yaml: PyTorchJob pinger": (
        "denied", {"pod-security"}, {"cel-warn"}),
}
CLAIM_KINDS = ("ResourceClaim", "ResourceClaimTemplate")
_POLICY = re.compile(r"^\[([a-z0-9-]+)\]")


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, object]]:
    run = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "check", "--config", "mlgate.yaml",
         "-f", "manifests", "-o", "json"],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, f"some manifests are denied, so exit code 1: {run.stderr}"
    # every workload and DRA claim; objects of other kinds would be skipped
    return {f"{Path(r['file']).relative_to('manifests')}: {r['resource']}": r
            for r in json.loads(run.stdout) if not r["skipped"]}


def test_every_example_manifest_has_an_expectation(results: dict[str, dict[str, object]]) -> None:
    on_disk = {str(p.relative_to(EXAMPLES / "manifests"))
               for p in (EXAMPLES / "manifests").rglob("*.yaml")}
    assert on_disk == {name.split(": ")[0] for name in EXPECTED}
    assert set(EXPECTED) == set(results)


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
    if name.split(": ")[1].split()[0] in CLAIM_KINDS:
        assert not result["patch"], "mlgate judges DRA claims and never changes them"
    elif name.startswith("good/"):
        assert result["patch"], "the mutators complete the good manifests"


def test_the_example_config_enables_every_policy_mlgate_ships() -> None:
    from webhook import config, plugins

    cfg = config.load(EXAMPLES / "mlgate.yaml", environ={})
    missing = set(plugins.discover().policies) - set(cfg.policies)
    assert not missing, f"examples/mlgate.yaml does not configure {sorted(missing)}"

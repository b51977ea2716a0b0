"""`mlgate test`: test files with expected verdicts, a diff on mismatch, JUnit XML for CI,
and the kubectl plugin that runs the same command."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from tests.factories import GPU, container, pod, pod_spec
from webhook import admission, cli, engine, policytests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GPU_POD = pod(pod_spec(container(limits={"cpu": "1", "memory": "1Gi", **GPU})), name="trainer")
del GPU_POD["metadata"]["namespace"]  # placed by the test file's `namespace`
NO_LIMITS = pod(pod_spec(container("nolimits")), name="nolimits", namespace="ml")


def write_test(path: Path, expect: list[dict[str, Any]], **fields: Any) -> Path:
    body = {"apiVersion": "mlgate.io/v1alpha1", "kind": "PolicyTest",
            "manifests": ["manifests.yaml"], **fields, "expect": expect}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "manifests.yaml").write_text(yaml.safe_dump_all([GPU_POD, NO_LIMITS]))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["test", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def junit_cases(path: Path) -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(path).getroot()
    assert root.tag == "testsuites"
    return {case.attrib["name"]: case for case in root.iter("testcase")}


# -- the examples ------------------------------------------------------------------------
def test_the_examples_pass_and_write_junit(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    result = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "test", "examples/tests", "--junit", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "14 passed, 0 failed" in result.stdout
    cases = junit_cases(report)
    assert len(cases) == 14
    assert not [name for name, case in cases.items() if case.find("failure") is not None]


def test_the_example_test_file_covers_every_example_manifest() -> None:
    suite = policytests.load(EXAMPLES / "tests" / "examples.yaml")
    expected = {e.resource for e in suite.expect}
    on_disk = set()
    for path in (EXAMPLES / "manifests").rglob("*.yaml"):
        for obj in cli.load_manifests(path):
            request = admission.synthetic_request(obj, user=engine.CHECK_USER, uid="offline",
                                                  namespace="default")
            on_disk.add(f"{request.kind} {request.namespace}/{request.name}")
    assert expected == on_disk


def test_a_wrong_expectation_fails_with_a_diff_and_a_junit_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = write_test(tmp_path / "wrong.yaml", [
        {"resource": "PyTorchJob vision/greedy", "verdict": "allowed", "deny": []},
        {"resource": "PyTorchJob vision/resnet50", "verdict": "allowed"},
    ], name="deliberately wrong", config=str(EXAMPLES / "mlgate.yaml"),
        manifests=[str(EXAMPLES / "manifests")])
    report = tmp_path / "junit.xml"
    code, out, _ = run(capsys, str(wrong), "--junit", str(report))
    assert code == 1
    assert "FAIL  PyTorchJob vision/greedy  (" in out and "ok    PyTorchJob vision/resnet50" in out
    diff = out.split("FAIL  PyTorchJob vision/greedy")[1].split("messages:")[0]
    assert [line.strip() for line in diff.splitlines()[1:] if line.strip()] == [
        "--- expected", "+++ actual", "-verdict: allowed", "-deny: []", "+verdict: denied",
        "+deny:", "+- gpu-limits"]
    assert "deny: [gpu-limits] PyTorchJob vision/greedy" in out  # the policy's own message
    assert "1 passed, 1 failed" in out

    cases = junit_cases(report)
    failure = cases["PyTorchJob vision/greedy"].find("failure")
    assert failure is not None and failure.text is not None
    assert failure.attrib["message"] == "expected and actual differ in verdict, deny"
    assert "-verdict: allowed\n" in failure.text and "+- gpu-limits" in failure.text
    assert cases["PyTorchJob vision/resnet50"].find("failure") is None
    suite = ElementTree.parse(report).getroot()[0]
    assert (suite.attrib["name"], suite.attrib["tests"], suite.attrib["failures"]) == (
        "deliberately wrong", "2", "1")


# -- what an expectation checks ----------------------------------------------------------
def test_default_config_and_namespace(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_test(folder / "t.yaml", [
        {"resource": "Pod team-a/trainer", "verdict": "allowed", "deny": [],
         "mutatedBy": ["gpu-tolerations", "default-resources"]},
        {"resource": "Pod nolimits", "verdict": "denied", "deny": ["require-limits"]},
    ], namespace="team-a")
    code, out, _ = run(capsys, str(folder / "t.yaml"))
    assert (code, out.count("ok    ")) == (0, 2), out


def test_mutated_values_match_what_they_list(folder: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    tolerations = "/spec/tolerations"
    write_test(folder / "t.yaml", [{"resource": "Pod trainer", "mutated": {
        tolerations: [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],  # a subset
        "/spec/containers/0/resources/requests/memory": "1Gi",
        "/metadata/name": "trainer"}}])
    assert run(capsys, str(folder))[0] == 0

    write_test(folder / "t.yaml", [{"resource": "Pod trainer", "mutated": {
        tolerations: [{"key": "amd.com/gpu"}],
        "/spec/containers/0/resources/requests/memory": "2Gi",
        "/spec/containers/0/resources/requests/memory/x": "1",
        "/metadata/name": "trainer"}}])
    code, out, _ = run(capsys, str(folder))
    assert code == 1
    diff = [" ".join(line.split()) for line in out.splitlines()]
    assert "- - key: amd.com/gpu" in diff and "+ - key: nvidia.com/gpu" in diff
    assert "- /spec/containers/0/resources/requests/memory: 2Gi" in diff
    assert "+ /spec/containers/0/resources/requests/memory: 1Gi" in diff
    assert "+ /spec/containers/0/resources/requests/memory/x: (not set)" in diff
    assert "/metadata/name: trainer" in diff  # a matching value is context, not a change


def test_a_missing_resource_fails_and_lists_those_there(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_test(folder / "t.yaml", [{"resource": "Pod trainer", "verdict": "allowed"},
                                  {"resource": "Pod other/trainer", "verdict": "allowed"}])
    code, out, _ = run(capsys, str(folder))
    assert code == 1
    assert "FAIL  Pod other/trainer" in out
    assert "+no such resource in the manifests of this test file" in out
    assert "resources in the manifests:" in out and "Pod ml/nolimits" in out


def test_an_ambiguous_resource_asks_for_the_namespace(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = {**GPU_POD, "metadata": {**GPU_POD["metadata"], "namespace": "other"}}
    (folder / "more.yaml").write_text(yaml.safe_dump(other))
    write_test(folder / "t.yaml", [{"resource": "Pod trainer", "verdict": "allowed"}],
              manifests=["manifests.yaml", "more.yaml"])
    code, out, _ = run(capsys, str(folder))
    assert code == 1
    assert "2 resources match: name the namespace (Kind namespace/name)" in out


def test_folders_hold_tests_beside_manifests(folder: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A folder is searched for test files; manifests next to them are not tests, and a
    test file is not a manifest when its own folder is in `manifests`."""
    (folder / "nested").mkdir()
    write_test(folder / "nested" / "t.yml", [{"resource": "Pod trainer", "verdict": "allowed"}],
              manifests=[".."])
    code, out, _ = run(capsys, str(folder))
    assert code == 0, out
    assert "t.yml (t)" in out and "1 passed, 0 failed" in out


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "complaint"), [
    ("kind: PolicyTest\nexpect: [", "not valid YAML"),
    ("kind: PolicyTest\n", "apiVersion: Field required"),
    ("apiVersion: v1\nkind: PolicyTest\nmanifests: [m]\nexpect: [{resource: Pod a}]",
     "apiVersion: Input should be 'mlgate.io/v1alpha1'"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nmanifests: []\n"
     "expect: [{resource: Pod a}]", "manifests: List should have at least 1 item"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nmanifests: [m]\n"
     "expect: [{resource: Pod a}, {resource: Pod b, verdikt: denied}]",
     "expect.1.verdikt: Extra inputs are not permitted"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nmanifests: [m]\n"
     "expect: [{resource: a-pod-name}]", "expect.0.resource: 'a-pod-name' is not "
                                         "'Kind name' or 'Kind namespace/name'"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nmanifests: [m]\n"
     "expect: [{resource: Pod a, verdict: rejected}]",
     "expect.0.verdict: Input should be 'allowed', 'denied' or 'skipped'"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nmanifests: [m]\n"
     "expect: [{resource: Pod a, mutated: {spec.tolerations: []}}]",
     "expect.0.mutated: 'spec.tolerations' is not a JSON pointer"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nmanifests: [absent]\n"
     "expect: [{resource: Pod a}]", "manifests: {dir}/absent: no such file or directory"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nconfig: absent.yaml\n"
     "manifests: [m]\nexpect: [{resource: Pod a}]",
     "config: cannot read config file {dir}/absent.yaml"),
    ("apiVersion: mlgate.io/v1alpha1\nkind: PolicyTest\nconfig: bad-config.yaml\n"
     "manifests: [m]\nexpect: [{resource: Pod a}]",
     "config: {dir}/bad-config.yaml: policies.require-limits.mode: Input should be"),
])
def test_a_bad_test_file_names_the_file_and_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, complaint: str) -> None:
    (tmp_path / "bad-config.yaml").write_text("policies: {require-limits: {mode: sometimes}}")
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    code, out, err = run(capsys, str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"mlgate test: {path}: ")
    assert complaint.format(dir=tmp_path) in err, err


def test_paths_that_hold_no_tests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(GPU_POD))
    code, _, err = run(capsys, str(tmp_path))
    assert code == 2 and "no test files in this folder" in err
    code, _, err = run(capsys, str(tmp_path / "absent"))
    assert code == 2 and "absent: no such file or directory" in err


# -- kubectl mlgate ----------------------------------------------------------------------
def test_the_kubectl_plugin_is_installed_as_kubectl_mlgate() -> None:
    scripts = importlib.metadata.entry_points(group="console_scripts", name="kubectl-mlgate")
    assert [entry.value for entry in scripts] == ["webhook.cli:main"]
    assert (Path(sys.executable).parent / "kubectl-mlgate").exists()


def kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(ROOT / ".tools" / "bin"))
    if found is None:
        pytest.skip("kubectl is not installed: run scripts/install-tools (scripts/test does)")
    return found


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["test", "examples/tests"], 0, "14 passed, 0 failed"),
    (["check", "-f", "examples/manifests/good", "--config", "examples/mlgate.yaml"], 0,
     "6 resources: 0 denied, 6 allowed"),
    (["check", "-f", "examples/manifests/bad/privileged-pod.yaml"], 1, "Pod debug-node: DENIED"),
])
def test_kubectl_runs_the_plugin(argv: list[str], code: int, says: str) -> None:
    """kubectl finds `kubectl-mlgate` on PATH and hands it the rest of the command line."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "KUBECONFIG": "/dev/null"}
    result = subprocess.run([kubectl(), "mlgate", *argv], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stdout


def test_the_readme_example_is_a_passing_test_file(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [b.partition("\n")[2] for b in readme.split("```")
                if b.startswith("yaml\n") and "kind: PolicyTest" in b]
    (tmp_path / "mlgate.yaml").symlink_to(EXAMPLES / "mlgate.yaml")
    (tmp_path / "manifests").symlink_to(EXAMPLES / "manifests")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "readme.yaml").write_text(block)
    code, out, err = run(capsys, str(tmp_path / "tests"))
    assert (code, err) == (0, ""), out
    assert "2 passed, 0 failed" in out


def test_a_pod_finds_the_claim_template_of_another_manifest_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                "metadata": {"name": "two", "namespace": "ml"},
                "spec": {"spec": {"devices": {"requests": [
                    {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                                "count": 2}}]}}}}
    spec = pod_spec(container(limits={"cpu": "1", "memory": "1Gi"}),
                    resourceClaims=[{"name": "g", "resourceClaimTemplateName": "two"}])
    spec["containers"][0]["resources"]["claims"] = [{"name": "g"}]
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod(spec, name="dra", namespace="ml")))
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump(template))
    (tmp_path / "mlgate.yaml").write_text(yaml.safe_dump(
        {"policies": {"gpu-limits": {"params": {"maxPerPod": 1}}}}))
    write_test(tmp_path / "t.yaml", [
        {"resource": "Pod ml/dra", "verdict": "denied", "deny": ["gpu-limits"],
         "mutated": {"/spec/tolerations": [{"key": "nvidia.com/gpu"}]}}],
        manifests=["pod.yaml", "claims.yaml"], config="mlgate.yaml")
    code, out, _ = run(capsys, str(tmp_path / "t.yaml"))
    assert code == 0, out

"""The policy author's path end to end: examples/policy-package, an outside package with its
own pyproject.toml and entry point, installed with pip into a fresh virtual environment,
type-checked, and loaded by `mlgate policies list`, `mlgate check` and `mlgate serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests import factories
from tests.server import running_server

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "policy-package"
ENTRY = "entry point gpu-pod-budget = acme_policies.gpu_pod_budget:GpuPodBudget"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv that sees mlgate and its dependencies (this test environment's
    site-packages) and holds the example package, installed by pip from its directory."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "mlgate-test-environment.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-build-isolation", "--no-index", "--quiet", str(PACKAGE)],
        capture_output=True, text=True, cwd=root, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return python


def mlgate(python: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "webhook.cli", *args], capture_output=True,
                          text=True, cwd=PACKAGE, timeout=120)


def test_the_installed_package_registers_its_policy(venv: Path) -> None:
    listed = mlgate(venv, "policies", "list", "--config", "mlgate.yaml", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "gpu-pod-budget")
    assert row["source"] == ENTRY and row["mode"] == "enforce"
    assert row["params"]["maxPods"] == 4


def test_check_denies_with_the_package_policy(venv: Path) -> None:
    result = mlgate(venv, "check", "--config", "mlgate.yaml", "-f", "manifests.yaml",
                    "-o", "json")
    assert result.returncode == 1, result.stderr
    (verdict,) = json.loads(result.stdout)
    assert verdict["verdict"] == "denied"
    assert [v for v in verdict["violations"] if v.startswith("[gpu-pod-budget]")] == [
        "[gpu-pod-budget] PyTorchJob ml/llm-finetune: 8 accelerator pods (Master: 1, Worker: 7) "
        "exceed the budget of 4 (run at most 4 accelerator pods, or ask the platform team for "
        "a larger budget in policies.gpu-pod-budget.params)"]


def test_without_the_package_the_policy_is_unknown() -> None:
    result = mlgate(sys.executable, "check", "--config", "mlgate.yaml", "-f", "manifests.yaml")
    assert result.returncode != 0
    assert "policy 'gpu-pod-budget' is enabled but no module provides it" in result.stderr


@pytest.mark.integration
def test_serve_loads_the_package_policy(venv: Path, tmp_path: Path) -> None:
    job = yaml.safe_load((PACKAGE / "manifests.yaml").read_text())
    review = factories.admission_review(job, namespace="ml")
    with running_server(tmp_path, config=PACKAGE / "mlgate.yaml", python=str(venv)) as server, \
            server.client() as client:
        assert "gpu-pod-budget" in client.get("/readyz").json()["policies"]
        answer = client.post("/validate", json=review).json()["response"]
    assert answer["allowed"] is False
    assert "exceed the budget of 4" in answer["status"]["message"]


def test_the_package_type_checks_against_the_installed_mlgate(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                             str(PACKAGE / "src" / "acme_policies")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

"""Running the real `helm` binary on the chart: render, lint, and dry-run install for NOTES."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlgate"
SCENARIOS = sorted((CHART / "ci").glob("*.yaml"))
RELEASE, NAMESPACE = "gate", "mlgate-system"


def binary() -> str:
    """helm from PATH or from .tools/bin (where scripts/install-tools puts it)."""
    found = shutil.which("helm") or shutil.which("helm", path=str(ROOT / ".tools" / "bin"))
    if found is None:
        raise RuntimeError("helm is not installed: run scripts/install-tools (scripts/test does)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/mlgate-helm/cache",
           "HELM_CONFIG_HOME": "/tmp/mlgate-helm/config", "HELM_DATA_HOME": "/tmp/mlgate-helm/data"}
    return subprocess.run([binary(), *args], capture_output=True, text=True, timeout=120, env=env)


def _value_args(values: list[Path], sets: dict[str, str] | None,
                set_json: dict[str, str] | None) -> list[str]:
    args: list[str] = []
    for path in values:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    for key, value in (set_json or {}).items():
        args += ["--set-json", f"{key}={value}"]
    return args


def template(*values: Path, sets: dict[str, str] | None = None,
             set_json: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
               *_value_args(list(values), sets, set_json))


def render(*values: Path, sets: dict[str, str] | None = None,
           set_json: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every object `helm template` renders; raises with helm's message when it fails."""
    result = template(*values, sets=sets, set_json=set_json)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def notes(*values: Path, sets: dict[str, str] | None = None) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (no cluster needed)."""
    result = run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                 *_value_args(list(values), sets, None))
    if result.returncode != 0:
        raise AssertionError(f"helm install --dry-run failed:\n{result.stderr}")
    return result.stdout.partition("NOTES:")[2]


def lint(*values: Path) -> subprocess.CompletedProcess[str]:
    return run("lint", str(CHART), "--strict", "--namespace", NAMESPACE,
               *_value_args(list(values), None, None))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]

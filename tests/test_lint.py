"""The code stays within the project's ruff rules (pyproject: E, F, I, B, UP, SIM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format",
                             "concise", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "webhook", "policies"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_policy_example_type_checks_as_an_outside_module(tmp_path: Path) -> None:
    # Run from elsewhere, so mlgate is found as an installed package: without py.typed mypy
    # would treat every mlgate type as Any (or refuse the import).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Writing a policy", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "no_latest.py").write_text(example)
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                             "no_latest.py"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

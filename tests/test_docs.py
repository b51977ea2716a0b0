"""`mlgate policies docs` renders the reference from the classes; policies/README.md is it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import Field

from webhook import docs, plugins, policy

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_the_output_of_the_docs_command() -> None:
    result = subprocess.run([sys.executable, "-m", "webhook.cli", "policies", "docs"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    readme = (ROOT / "policies" / "README.md").read_text(encoding="utf-8")
    assert result.stdout == readme, (
        "policies/README.md is stale: run `mlgate policies docs > policies/README.md`")
    assert not result.stderr, f"a policy failed to load: {result.stderr}"


def test_every_installed_policy_and_param_is_documented() -> None:
    catalogue = plugins.discover()
    text = docs.render(catalogue)
    for name, cls in catalogue.policies.items():
        assert f"## {name}\n" in text and f"- phase: `{cls.phase}`" in text
        for field in cls.params_model.model_fields:
            assert f"| `{field}` |" in text, (name, field)


class Limits(policy.Params):
    cpu: str | None = Field(None, description="CPU | cap.")


class DemoParams(policy.Params):
    level: str = Field("baseline", description="The level.")
    limits: list[Limits] = Field(default_factory=list, description="Caps.")
    required: int = Field(description="Must be set.")


class Demo(policy.MutatingPolicy[DemoParams]):
    """Demo policy summary.

    More words that stay out of the index.
    """

    name = "demo"


def test_types_defaults_and_nested_models_render() -> None:
    catalogue = plugins.Catalogue()
    catalogue.add(Demo, "test")
    text = docs.render(catalogue)
    assert "| [demo](#demo) | mutate | enforce | Demo policy summary. |" in text
    assert "More words" not in text.split("## demo")[0]
    assert '| `level` | str | `"baseline"` | The level. |' in text
    assert "| `limits` | list[Limits] | `[]` | Caps. |" in text
    assert "| `limits[].cpu` | str \\| null | `null` | CPU \\| cap. |" in text
    assert "| `required` | int | required | Must be set. |" in text
    assert "- on without a config file: no" in text

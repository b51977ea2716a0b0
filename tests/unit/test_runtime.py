"""Hot reload of the configuration as kubelet updates a ConfigMap mounted as a directory."""

from __future__ import annotations

import os
from pathlib import Path

from webhook import dra
from webhook.runtime import Runtime


def kubelet_publish(directory: Path, version: str, text: str) -> None:
    """What kubelet does on a ConfigMap update: a new timestamped directory, then an atomic
    swap of the `..data` symlink; `mlgate.yaml` is a symlink through `..data`."""
    target = directory / f"..{version}"
    target.mkdir()
    (target / "mlgate.yaml").write_text(text)
    link = directory / "..data_tmp"
    link.symlink_to(target.name)
    os.replace(link, directory / "..data")
    if not (directory / "mlgate.yaml").is_symlink():
        (directory / "mlgate.yaml").symlink_to("..data/mlgate.yaml")


async def test_a_configmap_update_through_the_data_symlink_is_reloaded(tmp_path: Path) -> None:
    kubelet_publish(tmp_path, "v1", "policies: {require-limits: {mode: enforce}}\n")
    runtime = Runtime(tmp_path / "mlgate.yaml")
    runtime.load()
    assert runtime.engine.config.policies["require-limits"].mode == "enforce"
    assert await runtime.reload_if_changed() is None  # nothing changed yet
    kubelet_publish(tmp_path, "v2", "policies: {require-limits: {mode: warn}}\n")
    assert await runtime.reload_if_changed() is True
    assert runtime.engine.config.policies["require-limits"].mode == "warn"


async def test_the_claim_source_outlives_a_reload(tmp_path: Path) -> None:
    (tmp_path / "mlgate.yaml").write_text("policies: {require-limits: {mode: enforce}}\n")
    runtime = Runtime(tmp_path / "mlgate.yaml")
    runtime.load()
    assert isinstance(runtime.engine.claims, dra.Nothing)
    source = dra.Manifests([])
    runtime.use_claims(source)  # what the server does with its claim cache
    assert runtime.engine.claims is source
    assert await runtime.reload() is True
    assert runtime.engine.claims is source

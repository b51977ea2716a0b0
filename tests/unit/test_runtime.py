"""Hot reload of the configuration as kubelet updates a ConfigMap mounted as a directory."""

from __future__ import annotations

import concurrent.futures
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


async def test_an_empty_claim_cache_stays_the_claim_source_across_reloads(
        tmp_path: Path) -> None:
    """A claim cache with no objects yet has len() 0: it must not be taken for 'none'."""
    from webhook import dra

    class EmptySource(dra.Nothing):
        def __len__(self) -> int:
            return 0

        def describe(self) -> str:
            return "the empty test source"

    config_file = tmp_path / "mlgate.yaml"
    config_file.write_text("policies: {require-limits: {mode: enforce}}\n")
    runtime = Runtime(config_file)
    runtime.load()
    source = EmptySource()
    runtime.use_claims(source)
    config_file.write_text("policies: {require-limits: {mode: warn}}\n")
    os.utime(config_file, ns=(1, 1))
    assert await runtime.reload_if_changed() is True
    assert runtime.engine.claims is source


async def test_the_policy_threads_outlive_a_reload(tmp_path: Path) -> None:
    (tmp_path / "mlgate.yaml").write_text("policies: {require-limits: {mode: enforce}}\n")
    runtime = Runtime(tmp_path / "mlgate.yaml")
    runtime.load()
    assert runtime.engine.executor is None  # `mlgate check`: the loop's default executor
    with concurrent.futures.ThreadPoolExecutor(1) as threads:
        runtime.use_executor(threads)  # what the server does with its PolicyThreads
        assert runtime.engine.executor is threads
        assert await runtime.reload() is True
        assert runtime.engine.executor is threads

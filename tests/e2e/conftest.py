"""The real control plane for the end-to-end tests: one per session, mlgate installed once.

Tests share the chart release in `mlgate-system`; each test works in a namespace of its own
(the API server has no controller-manager: deleted namespaces never go away). A test that
changes mlgate's configuration puts the default back when it ends (`gate` fixture).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ABSENT, SHARED
from tests.e2e import cluster, controlplane

_names = itertools.count()


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    with controlplane.running(tmp_path_factory.mktemp("controlplane")) as running:
        yield running


def base_config(gate: cluster.Mlgate) -> dict[str, Any]:
    """The chart's configuration, plus the audit API checking tokens against the cluster
    (what a pod gets by itself from its in-cluster service account: the chart's
    ServiceAccount, so the chart's RBAC is what is tested)."""
    config = yaml.safe_load((gate.workdir / "chart-config.yaml").read_text()) or {}
    config["audit"] = {**config.get("audit", {}), "kubernetesAuth": True,
                       "scan": {"kubeconfig": str(gate.workdir / "sa-kubeconfig")}}
    # the claim cache (GPUs through DRA), with the RBAC the chart grants for it
    config.setdefault("dra", {})["cache"] = {"enabled": True,
                                             "kubeconfig": str(gate.workdir / "sa-kubeconfig")}
    return config


@pytest.fixture(scope="session")
def release(plane: controlplane.ControlPlane,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.Mlgate]:
    """The chart installed (certificates made by the chart), `mlgate serve` answering."""
    gate = cluster.install(plane, tmp_path_factory.mktemp("mlgate"),
                           "--set", "config.dra.cache.enabled=true")
    (gate.workdir / "chart-config.yaml").write_text(gate.config_file.read_text())
    cluster.token_kubeconfig(plane, gate.workdir / "sa-kubeconfig",
                             cluster.token(plane, gate.release, gate.namespace))
    gate.config_file.write_text(yaml.safe_dump(base_config(gate)))
    cluster.audit_reader_token(gate)
    gate.start()
    try:
        yield gate
    finally:
        gate.stop()


@pytest.fixture
def gate(release: cluster.Mlgate) -> Iterator[cluster.Mlgate]:
    """The shared release; running again and with the chart's configuration after the test."""
    yield release
    if release.process is None or release.process.poll() is not None:
        release.stop()
        release.start()
    default = base_config(release)
    current = yaml.safe_load(release.config_file.read_text())
    if current != default:
        release.configure(default)


@pytest.fixture
def namespace(plane: controlplane.ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for this test (with its `default` ServiceAccount)."""
    base = request.node.name.lower().replace("_", "-")
    name = "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-")
    return plane.namespace(f"{name}-{next(_names)}")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(ABSENT)
    return SHARED

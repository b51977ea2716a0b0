"""Shared fixtures. Third-party data lives in ../shared (team machines and CI only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ABSENT = ("../shared is absent: it holds third-party manifests, peer suites and signatures "
          "that only team machines and CI have; the project's own fixtures cover these cases")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(ABSENT)
    return SHARED


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real kube-apiserver (and etcd) for the tests outside tests/e2e that need one; no
    mlgate is installed in it. One per session: tests add only objects with names of their
    own (or start a control plane of their own when they change what others would see)."""
    from tests.e2e import controlplane

    with controlplane.running(tmp_path_factory.mktemp("kube-apiserver")) as plane:
        yield plane

"""Shared fixtures. Third-party data lives in ../shared (team machines and CI only)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ABSENT = ("../shared is absent: it holds third-party manifests, peer suites and signatures "
          "that only team machines and CI have; the project's own fixtures cover these cases")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(ABSENT)
    return SHARED

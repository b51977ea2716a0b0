"""Fixtures of the audit tests: a real PostgreSQL on loopback, journal URLs of both
backends so that the same tests run against SQLite and PostgreSQL, and the scan's cluster."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from webhook import server

if TYPE_CHECKING:
    from tests.e2e.controlplane import ControlPlane


@dataclass
class Postgres:
    port: int
    directory: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"journal_{next(_DATABASES)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


_DATABASES = itertools.count(1)


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run scripts/install-tools (Debian postgresql)")
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """initdb + pg_ctl start on a free loopback port, as the postgres user when root."""
    bin_dir = _binaries()
    directory = Path(tempfile.mkdtemp(prefix="mlgate-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync"], check=True,
                   capture_output=True)
    port = server.free_port()
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={directory} "
               f"-c fsync=off")
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                    "-l", str(directory / "log"), "-w", "-t", "60", "start"], check=True,
                   capture_output=True)
    try:
        yield Postgres(port, directory)
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty journal database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.create_database()


@pytest.fixture(scope="module")
def scan_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real kube-apiserver of this module's own holding tests/audit/fixtures/cluster."""
    from tests.audit import cluster

    with cluster.populated(tmp_path_factory.mktemp("scan-cluster")) as plane:
        yield plane

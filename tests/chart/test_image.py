"""The Dockerfile, checked statically: no Docker engine runs on these machines, so the
image is not built here. What can be checked without one is checked: stages, base, layer
order, user, entrypoint, ports, what the build context holds, and that the server writes
nothing outside its data directory and /tmp (run for real, from an empty working tree)."""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from tests import factories
from tests.server import running_server

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_multi_stage_on_a_slim_python() -> None:
    steps = instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for op, a in steps if op == "ARG" and "=" in a}
    froms = [a for op, a in steps if op == "FROM"]
    assert len(froms) >= 2
    for base in froms:
        image = base.split()[0]
        image = args.get(image.strip("${}"), image)
        assert image.startswith("python:3.11") and "slim" in image, image
    assert "COPY --from=build" in " ".join(f"{op} {a}" for op, a in final_stage())
    assert not any("pip install" in a for op, a in final_stage() if op == "RUN")


def test_dependencies_have_their_own_layer() -> None:
    """pyproject.toml is copied and the dependencies installed before any code is copied."""
    steps = instructions()
    copies = [(i, a) for i, (op, a) in enumerate(steps) if op == "COPY" and "--from" not in a]
    first_code = min(i for i, a in copies if "webhook" in a or "policies" in a)
    deps = [i for i, (op, a) in enumerate(steps)
            if op == "RUN" and "pip install -r requirements.txt" in a]
    assert deps and deps[0] < first_code
    before = [a for i, a in copies if i < deps[0]]
    assert before == ["pyproject.toml ./"]


def test_numeric_non_root_user_matching_the_chart() -> None:
    users = [a for op, a in final_stage() if op == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit())
    values = yaml.safe_load((ROOT / "charts" / "mlgate" / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_entrypoint_command_and_port() -> None:
    stage = dict((op, a) for op, a in final_stage() if op in ("ENTRYPOINT", "CMD"))
    assert json.loads(stage["ENTRYPOINT"]) == ["mlgate"]
    assert json.loads(stage["CMD"]) == ["serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "mlgate" in scripts  # the entrypoint exists once the package is installed
    exposed = [port for op, a in instructions() if op == "EXPOSE" for port in a.split()]
    assert exposed == ["8443"]


def test_writable_paths_are_the_data_dir_and_tmp() -> None:
    env = " ".join(a for op, a in final_stage() if op == "ENV")
    assert "MLGATE_DATA_DIR=/var/lib/mlgate" in env and "HOME=/tmp" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    workdir = [a for op, a in final_stage() if op == "WORKDIR"]
    assert workdir[-1] == "/var/lib/mlgate"


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") or \
                fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern.removeprefix("**/")):
            ignored = not negate
    return ignored


def test_build_context_holds_only_what_the_image_needs() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for op, args in instructions():
        if op == "COPY" and "--from" not in args:
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), source
                assert not _ignored(source, patterns), f"{source} is copied but ignored"
    for kept in ("webhook/app.py", "policies/require_limits.py", "pyproject.toml"):
        assert not _ignored(kept, patterns), kept
    for dropped in (".git/HEAD", "tests/conftest.py", ".tools/bin/helm", "certs/tls.key",
                    "charts/mlgate/values.yaml", ".mlgate/journal.db",
                    "webhook/__pycache__/app.cpython-311.pyc"):
        assert _ignored(dropped, patterns), dropped


@pytest.mark.integration
def test_server_writes_nothing_outside_data_dir_and_tmp(tmp_path: Path) -> None:
    """Run the real server as the image would (HOME=/tmp, a data dir, given TLS files)
    from a working directory that must stay as it was."""
    work = tmp_path / "work"
    home = tmp_path / "home"
    data = tmp_path / "data"
    for directory in (work, home, data):
        directory.mkdir()
    env = {"HOME": str(home), "MLGATE_DATA_DIR": str(data), "PYTHONDONTWRITEBYTECODE": "1",
           "XDG_CACHE_HOME": str(home / ".cache")}
    with running_server(work, "--data-dir", str(data), env=env) as server:
        before = {p.relative_to(work) for p in work.rglob("*")}
        review = factories.admission_review(factories.pod())
        with server.client() as client:
            for endpoint in ("/mutate", "/validate"):
                assert client.post(endpoint, json=review).status_code == 200
        after = {p.relative_to(work) for p in work.rglob("*")}
    # the harness's own certificates and log are all the working tree holds
    assert after == before
    assert {p.parts[0] for p in after} <= {"certs", f"server-{server.port}.log"}
    assert list(home.rglob("*")) == []
    assert list(data.iterdir()), "the decision journal belongs in the data directory"

"""The audit API never answers 500: a bad query parameter is a 400 naming it, a journal that
is down is a 503 with a reason (issue 12, point 4). Real server over TLS, real PostgreSQL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import factories
from tests.audit import records
from tests.audit.conftest import Postgres, running_postgres
from tests.server import RunningServer, running_server

pytestmark = pytest.mark.integration

READER = "reader-token"
AUTH = {"Authorization": f"Bearer {READER}"}
ENDPOINTS = ("/audit/report", "/audit/decisions")


def _serve(workdir: Path, journal_url: str) -> contextlib.AbstractContextManager[RunningServer]:
    (workdir / "tokens.csv").write_text(f'{READER},rita,u1,"mlgate:audit-readers"\n')
    cfg = workdir / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({"audit": {"tokenFile": str(workdir / "tokens.csv")},
                                   "journal": {"url": journal_url, "flushInterval": "50ms"}}))
    return running_server(workdir, "--data-dir", str(workdir / "data"), config=cfg)


def _journal_some(client: httpx.Client, count: int) -> None:
    for index in range(count):
        review = factories.admission_review(records.gpu_pod(f"job-{index}"), uid=f"uid-{index}")
        assert client.post("/validate", json=review).status_code == 200
    deadline = time.monotonic() + 30
    while len(client.get("/audit/decisions", headers=AUTH).json()["items"]) < count:
        assert time.monotonic() < deadline, "the journal did not write within 30 s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres,
           ) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("audit-queries")
    with _serve(workdir, postgres.create_database()) as running, running.client() as client:
        _journal_some(client, 3)
        yield running


BAD = [
    # (parameter, value, words the answer must contain)
    ("since", "nan", "since="), ("since", "inf", "since="), ("since", "-inf", "since="),
    ("since", "1e308", "since="), ("since", "99999999999d", "since="),
    ("since", "9" * 400 + "s", "since="), ("until", "nan", "until="),
    ("until", "1e308", "until="), ("until", "-1e308", "until="),
    ("until", "99999999999d", "until="), ("since", "0001-01-01T00:00:00-23:59", "since="),
    ("namespace", "a\x00b", "namespace="), ("kind", "\x00", "kind="),
    ("policy", "p\x00", "policy="), ("user", "\x00", "user="),
]
BAD_PAGING = [
    ("cursor", str(2**63), "cursor="), ("cursor", str(2**64 + 1), "cursor="),
    ("cursor", "0", "cursor="), ("cursor", "\u00b2", "cursor="), ("cursor", "\u0663", "cursor="),
    ("limit", "\u00b2", "limit="), ("limit", "\u0661\u0660", "limit="),
    ("limit", "1" * 5000, "limit="), ("limit", "0", "limit="), ("limit", "1001", "limit="),
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(("name", "value", "named"), BAD)
def test_a_bad_filter_is_a_400_naming_it(server: RunningServer, path: str, name: str,
                                         value: str, named: str) -> None:
    with server.client() as client:
        answer = client.get(path, params={name: value}, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]


@pytest.mark.parametrize(("name", "value", "named"), BAD_PAGING)
def test_a_bad_page_parameter_is_a_400_naming_it(server: RunningServer, name: str,
                                                 value: str, named: str) -> None:
    with server.client() as client:
        answer = client.get("/audit/decisions", params={name: value}, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]


def test_the_largest_cursor_is_accepted(server: RunningServer) -> None:
    with server.client() as client:
        page = client.get("/audit/decisions", params={"cursor": str(2**63 - 1)}, headers=AUTH)
    assert page.status_code == 200 and len(page.json()["items"]) == 3


KEYS = ("since", "until", "namespace", "policy", "kind", "user", "decision", "limit",
        "cursor", "format")
VALUES = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?(ms|s|m|h|d)?",
                  fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "99999999999d", "\u00b2", "\u0663",
                     str(2**63), str(2**63 - 1), "9999-12-31T23:59:59Z", "0001-01-01",
                     "json", "html", "policyreport", "denied", "24h", "0"]),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(ENDPOINTS), query=st.dictionaries(st.sampled_from(KEYS), VALUES))
def test_no_query_is_a_server_error(server: RunningServer, path: str,
                                    query: dict[str, str]) -> None:
    with server.client() as client:
        answer = client.get(path, params=query, headers=AUTH)
    assert answer.status_code in (200, 400), (query, answer.status_code, answer.text)
    if answer.status_code == 400:
        assert "=" in answer.json()["error"] or "until must be after since" in answer.text


def test_a_journal_that_is_down_is_a_503_then_recovers(tmp_path: Path) -> None:
    with running_postgres() as pg, _serve(tmp_path, pg.create_database()) as running, \
            running.client() as client:
        _journal_some(client, 2)
        pg.stop()
        for path in ENDPOINTS:
            started = time.monotonic()
            answer = client.get(path, headers=AUTH)
            assert answer.status_code == 503, answer.text
            assert "journal" in answer.json()["error"] and answer.headers["retry-after"]
            assert time.monotonic() - started < 5
        review = factories.admission_review(records.gpu_pod("while-down"), uid="down")
        assert client.post("/validate", json=review).status_code == 200
        pg.start()
        deadline = time.monotonic() + 30
        while client.get("/audit/decisions", headers=AUTH).status_code != 200:
            assert time.monotonic() < deadline, "the audit API did not recover within 30 s"
            time.sleep(0.2)
        assert "Traceback" not in running.output()

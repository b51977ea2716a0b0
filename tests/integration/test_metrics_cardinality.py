"""Metric labels come only from bounded sets, whatever the requests say (issue 12, point 5):
10,000 distinct kinds over TLS add one `kind="other"` series, not 10,000."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import pytest
from prometheus_client import parser

from tests import factories
from tests.server import RunningServer, running_server

pytestmark = pytest.mark.integration

KINDS = 10_000


def _series(server: RunningServer, name: str) -> list[dict[str, str]]:
    with server.client() as client:
        text = client.get("/metrics").text
    return [sample.labels for family in parser.text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def _send(server: RunningServer, kinds: range) -> None:
    with server.client() as client:
        for index in kinds:
            obj = {"apiVersion": f"evil{index}.example.com/v1", "kind": f"Kind{index}",
                   "metadata": {"name": f"x{index}", "namespace": "default"}, "spec": {}}
            answer = client.post("/validate", json=factories.admission_review(obj))
            assert answer.status_code == 200, answer.text


def test_ten_thousand_kinds_make_one_series(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "namespace": "default"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        with server.client() as client:
            assert client.post("/validate", json=factories.admission_review(pod)).is_success
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for done in [pool.submit(_send, server, range(start, KINDS, 4))
                         for start in range(4)]:
                done.result()
        sent = time.monotonic() - started
        series = _series(server, "mlgate_admission_requests_total")
        kinds = {labels["kind"] for labels in series}
        assert kinds == {"Pod", "other"}, sorted(kinds)[:10]
        assert len(series) <= 8, series  # endpoint x operation x kind x decision, all bounded
        print(f"{KINDS} requests with {KINDS} kinds in {sent:.1f} s: "
              f"{len(series)} request series")
        for name in ("mlgate_admission_duration_seconds_count",
                     "mlgate_policy_evaluations_total"):
            assert len(_series(server, name)) < 100, name

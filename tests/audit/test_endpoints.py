"""The audit side of the real server over TLS: access, report, decisions, metrics, logs,
the HTML page in headless Chromium, and `mlgate audit report`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import factories
from tests.audit import records
from tests.server import RunningServer, running_server

pytestmark = pytest.mark.integration

READER = "reader-token"
NOBODY = "nobody-token"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("audit-server")
    (workdir / "tokens.csv").write_text(f'{READER},rita,u1,"mlgate:audit-readers"\n'
                                        f"{NOBODY},nick,u2,dev\n")
    cfg = workdir / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({"audit": {"tokenFile": str(workdir / "tokens.csv")},
                                   "journal": {"flushInterval": "50ms"}}))
    with running_server(workdir, "--data-dir", str(workdir / "data"), config=cfg) as running:
        with running.client() as client:
            for index in range(6):
                review = factories.admission_review(
                    records.gpu_pod(f"job-{index}", namespace="team-a" if index % 2 else "team-b",
                                    limits=index >= 4),
                    uid=f"uid-{index}", user="alice@example.com" if index % 3 else "bob")
                assert client.post("/validate", json=review).status_code == 200
            review = factories.admission_review(records.gpu_pod("mutated"), uid="uid-mutate")
            assert client.post("/mutate", json=review).status_code == 200
            auth = {"Authorization": f"Bearer {READER}"}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the journal writes within a flush interval
                page = client.get("/audit/decisions", headers=auth).json()
                if len(page["items"]) == 7:
                    break
                time.sleep(0.05)
        yield running


def get(server: RunningServer, path: str, token: str | None = READER, **params: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with server.client() as client:
        return client.get(path, params=params, headers=headers)


@pytest.mark.parametrize("path", ["/audit/report", "/audit/decisions"])
def test_audit_endpoints_need_a_token_with_permission(server: RunningServer, path: str) -> None:
    missing = get(server, path, token=None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in missing.json()["error"]
    assert get(server, path, token="not-a-token").status_code == 401
    forbidden = get(server, path, token=NOBODY)
    assert forbidden.status_code == 403 and "nick" in forbidden.json()["error"]
    assert get(server, path).status_code == 200


def test_json_report(server: RunningServer) -> None:
    report = get(server, "/audit/report", since="1h").json()
    assert report["totals"] == {"allowed": 2, "denied": 4, "mutated": 1, "warned": 0,
                                "total": 7}
    policies = {p["policy"]: p for p in report["per_policy"]}
    assert policies["require-limits"]["denied"] == 4
    assert policies["gpu-tolerations"]["mutated"] == 1
    namespaces = {n["namespace"]: n["denied"] for n in report["per_namespace"]}
    assert namespaces["team-a"] == 2 and namespaces["team-b"] == 2
    assert {u["user"] for u in report["per_user"]} == {"alice@example.com", "bob"}
    assert {d["uid"] for d in report["recent_denials"]} == {f"uid-{i}" for i in range(4)}
    assert all(d["decision"] == "denied" for d in report["recent_denials"])
    assert report["violations"] == [] and report["scan"] is None
    only_bob = get(server, "/audit/report", user="bob", decision="denied").json()
    assert only_bob["totals"]["total"] == 2
    bad = get(server, "/audit/report", decision="maybe")
    assert bad.status_code == 400 and "must be one of" in bad.json()["error"]
    assert get(server, "/audit/report", format="pdf").status_code == 400


def test_decisions_cursor_pagination_over_http(server: RunningServer) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = get(server, "/audit/decisions", **params).json()
        seen += [item["uid"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert seen[0] == "uid-mutate"
    assert get(server, "/audit/decisions", limit="0").status_code == 400
    assert get(server, "/audit/decisions", cursor="abc").status_code == 400


def test_metrics(server: RunningServer) -> None:
    text = get(server, "/metrics", token=None).text
    assert re.search(r'mlgate_admission_requests_total\{decision="denied",endpoint="validate",'
                     r'kind="Pod",operation="CREATE"\} 4\.0', text)
    assert re.search(r'mlgate_admission_duration_seconds_bucket\{decision="denied",'
                     r'endpoint="validate",le="0.0005"\}', text)
    assert re.search(r'mlgate_admission_duration_seconds_bucket\{decision="denied",'
                     r'endpoint="validate",le="10.0"\} 4\.0', text)
    assert re.search(r'mlgate_admission_duration_seconds_count\{decision="allowed",'
                     r'endpoint="validate"\} 2\.0', text)
    assert re.search(r'mlgate_policy_evaluations_total\{mode="enforce",policy="require-limits",'
                     r'result="fail"\} 4\.0', text)
    assert re.search(r'mlgate_policy_evaluations_total\{mode="enforce",policy="require-limits",'
                     r'result="pass"\} 2\.0', text)
    assert "mlgate_journal_queue_depth" in text and "mlgate_journal_dropped_total 0.0" in text
    expiry = float(re.search(r"^mlgate_certificate_expiry_timestamp_seconds (\S+)$", text,
                             re.MULTILINE)[1])
    assert expiry > time.time() + 86400
    assert "mlgate_config_reloads_total" in text


def test_one_json_log_line_per_decision_without_the_object(server: RunningServer) -> None:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    decisions = [line for line in lines if line["logger"] == "mlgate.decision"]
    assert sorted(d["uid"] for d in decisions) == sorted(
        [f"uid-{i}" for i in range(6)] + ["uid-mutate"])
    first = next(d for d in decisions if d["uid"] == "uid-0")
    assert first["level"] == "INFO" and first["kind"] == "Pod" and first["name"] == "job-0"
    assert first["namespace"] == "team-b" and first["decision"] == "denied"
    assert first["duration_ms"] > 0
    assert "registry.example.com" not in json.dumps(decisions)  # never the object


def test_html_report_renders_in_headless_chromium(server: RunningServer,
                                                  tmp_path: Path) -> None:
    response = get(server, "/audit/report", format="html", since="1h")
    assert response.status_code == 200
    assert "script-src 'nonce-" in response.headers["content-security-policy"]
    page = response.text
    assert "<script src" not in page and "@import" not in page and "url(" not in page
    html_file = tmp_path / "report.html"
    html_file.write_text(page)
    url = html_file.as_uri() + "#sort=table-policies:0:asc"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert 'data-ready="1"' in dom  # the inline script ran (CSP nonce accepted)
    time_bars = re.findall(r'<rect class="bar denied" data-count="(\d+)"', dom.split(
        'id="chart-policies"')[0])
    assert sum(int(n) for n in time_bars) == 4
    assert re.search(r'data-policy="require-limits" data-count="4"', dom)
    policies_table = dom.split('id="table-policies"')[1].split("</table>")[0]
    names = re.findall(r"<tr><td>([a-z-]+)</td>", policies_table)
    assert names == sorted(names) and "require-limits" in names  # sorted by the script
    assert 'aria-sort="ascending"' in policies_table
    assert len(re.findall(r"<tr>", dom.split('id="table-denials"')[1].split("</table>")[0])) == 5
    assert 'id="filters"' in dom and 'name="namespace"' in dom
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1600", url],
                   capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 1600)
    assert len(png) > 20_000  # charts and tables, not a blank page


def test_cli_audit_report(server: RunningServer) -> None:
    base = [sys.executable, "-m", "webhook.cli", "audit", "report", "--server", server.url,
            "--ca-file", str(server.ca), "--since", "1h"]
    table = subprocess.run([*base, "--token", READER], capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 0, table.stderr
    assert "7 decisions, 4 denied, 1 mutated" in table.stdout
    assert re.search(r"require-limits\s+4", table.stdout)
    as_json = subprocess.run([*base, "--token", READER, "-o", "json"], capture_output=True,
                             text=True, timeout=60)
    assert json.loads(as_json.stdout)["totals"]["denied"] == 4
    refused = subprocess.run([*base, "--token", NOBODY], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1 and "403" in refused.stderr and "nick" in refused.stderr


def test_chromium_is_installed() -> None:
    assert shutil.which(CHROMIUM), "chromium is missing: run scripts/install-tools"

"""The Grafana dashboard the chart ships: a ConfigMap for Grafana's dashboard sidecar."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart import helm, prometheus

PANELS = [  # (row, title) in the order Grafana lays them out
    ("Admission", "Admission requests by endpoint and decision"),
    ("Admission", "Admission latency by endpoint and decision (p99, p50)"),
    ("Policies", "Denials by policy"),
    ("Policies", "Denials by policy over the time range"),
    ("Policies", "Policy errors and timeouts"),
    ("Policies", "Warnings and audit findings by policy"),
    ("Journal, certificate and configuration", "Journal queue"),
    ("Journal, certificate and configuration", "Journal drops"),
    ("Journal, certificate and configuration", "Serving certificate expires in"),
    ("Journal, certificate and configuration", "Last configuration reload"),
    ("Cluster scan", "Scan results"),
]


def dashboard_configmaps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in helm.by_kind(objects, "ConfigMap")
            if obj["metadata"]["name"].endswith("-dashboard")]


@pytest.fixture(scope="module")
def configmap() -> dict[str, Any]:
    found = dashboard_configmaps(helm.render(sets={"grafanaDashboard.enabled": "true"}))
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def dashboard(configmap: dict[str, Any]) -> dict[str, Any]:
    (text,) = configmap["data"].values()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [variable["definition"] for variable in dashboard["templating"]["list"]
              if variable["type"] == "query"]
    return exprs


def test_off_by_default() -> None:
    assert dashboard_configmaps(helm.render()) == []


def test_the_sidecar_label_and_where_the_configmap_goes(configmap: dict[str, Any]) -> None:
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == helm.NAMESPACE
    (objects,) = [dashboard_configmaps(helm.render(
        sets={"grafanaDashboard.enabled": "true", "grafanaDashboard.label": "dashboards",
              "grafanaDashboard.labelValue": "mlgate", "grafanaDashboard.namespace": "monitoring"},
        set_json={"grafanaDashboard.annotations": '{"grafana_folder": "ML"}'}))]
    (custom,) = objects
    assert custom["metadata"]["labels"]["dashboards"] == "mlgate"
    assert "grafana_dashboard" not in custom["metadata"]["labels"]
    assert custom["metadata"]["namespace"] == "monitoring"
    assert custom["metadata"]["annotations"] == {"grafana_folder": "ML"}


def test_a_numeric_label_value_is_rendered_as_a_string() -> None:
    """`--set grafanaDashboard.labelValue=1` arrives as a number; a label value is a string."""
    (custom,) = dashboard_configmaps(helm.render(sets={"grafanaDashboard.enabled": "true",
                                                       "grafanaDashboard.labelValue": "1"}))
    assert custom["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_panels(dashboard: dict[str, Any]) -> None:
    row, laid_out = "", []
    for panel in sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel["type"] == "row":
            row = panel["title"]
        else:
            laid_out.append((row, panel["title"]))
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"] and all(
                'job=~"$job"' in t["expr"] for t in panel["targets"]), panel["title"]
    assert laid_out == PANELS
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_no_two_panels_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_queries_use_metrics_and_labels_the_server_exports(dashboard: dict[str, Any]) -> None:
    """The dashboard cannot drift from webhook/metrics.py: every series it reads and every
    label it matches or groups by exists."""
    exported = prometheus.exported()
    used: set[str] = set()
    for expr in queries(dashboard):
        names = prometheus.metric_names(expr)
        assert names, expr
        for name in names:
            assert name in exported, f"{name} is not exported: {expr}"
            unknown = prometheus.label_names(expr) - exported[name]
            assert not unknown, f"{name} has no label {sorted(unknown)}: {expr}"
        used |= names
    topics = {"mlgate_admission_requests_total", "mlgate_admission_duration_seconds_bucket",
              "mlgate_policy_evaluations_total", "mlgate_policy_errors_total",
              "mlgate_journal_queue_depth", "mlgate_journal_dropped_total",
              "mlgate_certificate_expiry_timestamp_seconds", "mlgate_scan_objects"}
    assert topics <= used, topics - used

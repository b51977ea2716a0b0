"""What the server exports to Prometheus, so that the chart's queries stay in step with it."""

from __future__ import annotations

import re

from prometheus_client import metrics as client_metrics

from webhook import metrics
from webhook.signatures import metrics as signature_metrics

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",)}
SCRAPE_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint"}
_METRIC = re.compile(r"\bmlgate_[a-z_]+")
_MATCHER = re.compile(r"\b([a-zA-Z_]+)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported() -> dict[str, set[str]]:
    """Every series name the server exports, with the labels a query may use on it."""
    series: dict[str, set[str]] = {}
    for module in (metrics, signature_metrics):
        for value in vars(module).values():
            if not isinstance(value, client_metrics.MetricWrapperBase):
                continue
            labels = set(value._labelnames) | SCRAPE_LABELS  # no public accessor
            _add(series, value._name, str(value._type), labels)
    for name, (kind, names) in metrics.AdmissionTally.FAMILIES.items():
        _add(series, name, kind, set(names) | SCRAPE_LABELS)
    return series


def _add(series: dict[str, set[str]], name: str, kind: str, labels: set[str]) -> None:
    for suffix in SUFFIXES.get(kind, ("",)):
        series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def label_names(expr: str) -> set[str]:
    """Labels a query matches on or groups by."""
    names = set(_MATCHER.findall(expr))
    for group in _GROUPING.findall(expr):
        names |= {name.strip() for name in group.split(",") if name.strip()}
    return names

"""Prometheus metrics. Every subsystem registers its metrics on `REGISTRY`.

The admission metrics are filled from each `Decision` by `observe_decision()` (a decision
observer); the journal fills its own; the composition root (`webhook.server`) connects the
reload and certificate metrics. With `serve --workers N`
each worker process has its own registry: scrape them through one worker at a time or
run one worker per pod (the chart's default).

Every label value comes from a bounded set, never straight from a request: a kind is
its name when the kind table knows it and `other` otherwise, so that 30,000 made-up kinds
cannot make 30,000 series (a slow scrape that blocks the event loop, and memory).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from webhook import admission, kind_table

REGISTRY = CollectorRegistry(auto_describe=True)

# 0.5 ms .. 10 s: admission is a few ms; a slow registry or policy shows in the tail.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
# The `le` label of each bucket as the client library writes it ("0.0005", "10.0", "+Inf").
BUCKET_BOUNDS = [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]

OVERLOADED = Counter(
    "mlgate_admission_overloaded", "Admission requests answered 503 at once because "
    "maxInFlight requests were being evaluated already.", registry=REGISTRY)
POLICY_ERRORS = Counter(
    "mlgate_policy_errors", "Policies that raised or timed out, by policy.", ["policy"],
    registry=REGISTRY)
JOURNAL_QUEUE_DEPTH = Gauge(
    "mlgate_journal_queue_depth", "Decisions waiting to be written to the journal.",
    registry=REGISTRY)
JOURNAL_DROPS = Counter(
    "mlgate_journal_dropped", "Decisions not journaled: the queue was full, or the local "
    "buffer was (journal.spillBytes) while the database did not take them.",
    registry=REGISTRY)
JOURNAL_BUFFER_BYTES = Gauge(
    "mlgate_journal_buffer_bytes", "Bytes of the journal's local buffer on disk: decisions "
    "waiting there for the database (0 while the database keeps up).", registry=REGISTRY)
CERT_EXPIRY = Gauge(
    "mlgate_certificate_expiry_timestamp_seconds", "notAfter of the serving certificate "
    "(UNIX seconds).", registry=REGISTRY)
CONFIG_RELOADS = Counter(
    "mlgate_config_reloads", "Configuration reloads by result (success, failure).", ["result"],
    registry=REGISTRY)
CONFIG_LAST_RELOAD_OK = Gauge(
    "mlgate_config_last_reload_successful", "1 if the last configuration reload was applied.",
    registry=REGISTRY)
SCAN_OBJECTS = Gauge(
    "mlgate_scan_objects", "Objects seen by the last cluster scan, by result (pass, fail).",
    ["result"], registry=REGISTRY)
EVENTS = Counter(
    "mlgate_events", "Kubernetes Events by result (created, repeated: folded into an "
    "event's series, limited: over the per-namespace rate, dropped: queue full, failed).",
    ["result"], registry=REGISTRY)
POLICY_REPORTS = Gauge(
    "mlgate_policy_reports", "PolicyReports mlgate keeps in the cluster after the last scan.",
    registry=REGISTRY)


def _policy_result(policy: str, decision: Any) -> str:
    if policy in decision.mutated_by:
        return "mutated"
    found = [f for f in decision.findings if f.policy == policy]
    if any(f.error for f in found):
        return "error"
    if found and all(f.exception for f in found):
        return "excepted"
    return "fail" if found else "pass"


class AdmissionTally(Collector):
    """The per-decision metrics as plain counts, made into samples only when scraped.

    Every admission request moves three of them; through prometheus_client's metric
    objects that took a lock per count and a walk over the buckets per duration, 4% of a
    `/mutate` request under load. Counts change on the event loop only; a scrape copies
    the dicts before reading them.
    """

    # Each family's name, type and labels (collect() and the chart's checks read them).
    REQUESTS = "mlgate_admission_requests"
    DURATION = "mlgate_admission_duration_seconds"
    EVALUATIONS = "mlgate_policy_evaluations"
    FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
        REQUESTS: ("counter", ("endpoint", "operation", "kind", "decision")),
        DURATION: ("histogram", ("endpoint", "decision")),
        EVALUATIONS: ("counter", ("policy", "result", "mode")),
    }

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.durations: dict[tuple[str, str], list[float]] = {}  # per bucket, then the sum
        self.evaluations: dict[tuple[str, str, str], int] = {}

    def count_request(self, labels: tuple[str, str, str, str]) -> None:
        self.requests[labels] = self.requests.get(labels, 0) + 1

    def observe_duration(self, labels: tuple[str, str], seconds: float) -> None:
        counts = self.durations.get(labels)
        if counts is None:
            counts = self.durations[labels] = [0.0] * (len(DURATION_BUCKETS) + 2)
        counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def count_evaluation(self, labels: tuple[str, str, str]) -> None:
        self.evaluations[labels] = self.evaluations.get(labels, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            self.REQUESTS, "Admission requests answered, by endpoint, operation, kind (of "
            "the kind table, else other) and decision (allowed, denied, mutated, warned, "
            "skipped).", labels=self.FAMILIES[self.REQUESTS][1])
        for request_labels, count in list(self.requests.items()):
            requests.add_metric(request_labels, count)
        yield requests
        durations = HistogramMetricFamily(
            self.DURATION, "Time to evaluate one admission request, by endpoint and "
            "decision.", labels=self.FAMILIES[self.DURATION][1])
        for duration_labels, counts in list(self.durations.items()):
            cumulative, buckets = 0.0, []
            for bound, in_bucket in zip(BUCKET_BOUNDS, counts[:-1], strict=True):
                cumulative += in_bucket
                buckets.append((bound, cumulative))
            durations.add_metric(duration_labels, buckets, sum_value=counts[-1])
        yield durations
        evaluations = CounterMetricFamily(
            self.EVALUATIONS, "Policy evaluations by policy, result (pass, fail, excepted, "
            "mutated, error) and mode.", labels=self.FAMILIES[self.EVALUATIONS][1])
        for evaluation_labels, count in list(self.evaluations.items()):
            evaluations.add_metric(evaluation_labels, count)
        yield evaluations


ADMISSION = AdmissionTally()
REGISTRY.register(ADMISSION)


OTHER = "other"


def kind_label(group: str, kind: str) -> str:
    """The kind's name if the kind table has (group, kind), else `other`."""
    return kind if kind_table.lookup(group, kind) is not None else OTHER


def operation_label(operation: str) -> str:
    return operation if operation in admission.OPERATIONS else OTHER


def observe(decision: Any, evaluated: list[tuple[str, str]]) -> None:
    """Count one decision. `evaluated`: (policy, mode) of the policies that ran."""
    verdict = decision.outcome
    ADMISSION.count_request((decision.phase, operation_label(decision.operation),
                             kind_label(decision.group, decision.kind), verdict))
    ADMISSION.observe_duration((decision.phase, verdict), decision.duration)
    for policy, mode in evaluated:
        ADMISSION.count_evaluation((policy, _policy_result(policy, decision), mode))
    for finding in decision.findings:
        if finding.error:
            POLICY_ERRORS.labels(finding.policy).inc()


def observe_decision(decision: Any) -> None:
    """A decision observer (`create_app(observers=...)`): count one decision."""
    observe(decision, decision.evaluated)


def reload_result(ok: bool, _error: str) -> None:
    """A `runtime.listeners` callable."""
    CONFIG_RELOADS.labels("success" if ok else "failure").inc()
    CONFIG_LAST_RELOAD_OK.set(1 if ok else 0)

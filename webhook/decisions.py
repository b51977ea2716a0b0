"""What mlgate decided about one request, and why: the record every observer reads.

The engine fills a `Decision`; the admission answer, the metrics, the decision log and the
journal all read it. A `Finding` is one violation (or policy failure) with the mode that
decides its effect. `Decision.record()` is the flat form the journal stores and the audit
endpoints return; its keys are typed by `DecisionRecord`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from webhook import schema, workloads
from webhook.policy import Violation

Verdict = Literal["allowed", "denied", "mutated", "warned"]
"""What the answer did: denied beats mutated beats warned beats allowed."""
Outcome = Literal["allowed", "denied", "mutated", "warned", "skipped"]
"""The verdict, or `skipped` when no policy was evaluated (what metrics and logs count)."""


class FindingRecord(TypedDict):
    policy: str
    mode: str
    path: str
    container: str | None
    message: str
    error: bool
    preexisting: bool
    exception: str  # the exception that let this finding through ("" if none)


class DecisionRecord(TypedDict):
    """One decision as the journal stores it and `/audit/decisions` returns it."""

    time: float  # UNIX seconds when the request arrived
    uid: str
    phase: str
    operation: str
    group: str
    kind: str
    namespace: str
    name: str
    user: str
    groups: list[str]
    dry_run: bool
    allowed: bool
    decision: Verdict
    message: str
    violations: list[FindingRecord]
    mutated_by: list[str]
    exceptions: list[str]  # the exceptions that changed this decision
    warnings: list[str]
    skipped: str
    duration_ms: float


@dataclass
class Finding:
    """A violation (or a policy failure) with the mode that decides its effect."""

    policy: str
    mode: str
    message: str
    path: str = ""
    container: str | None = None
    error: bool = False
    preexisting: bool = False  # present in oldObject already (UPDATE)
    exception: str = ""  # the exception that lets this finding through: it denies nothing

    def record(self) -> FindingRecord:
        return {"policy": self.policy, "mode": self.mode, "path": self.path,
                "container": self.container, "message": self.message, "error": self.error,
                "preexisting": self.preexisting, "exception": self.exception}


@dataclass
class Decision:
    """What mlgate answered to one request, and why."""

    uid: str
    phase: schema.Phase
    operation: str
    group: str
    kind: str
    namespace: str
    name: str
    user: str
    groups: tuple[str, ...]
    dry_run: bool
    allowed: bool = True
    message: str = ""
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    mutated_by: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)  # that let a finding through
    evaluated: list[tuple[str, str]] = field(default_factory=list)  # (policy, mode) that ran
    skipped: str = ""  # why nothing was evaluated (exempt, unknown kind, ...)
    started: float = field(default_factory=time.time)
    duration: float = 0.0  # seconds

    @property
    def verdict(self) -> Verdict:
        if not self.allowed:
            return "denied"
        if self.patch:
            return "mutated"
        if self.warnings:
            return "warned"
        return "allowed"

    @property
    def outcome(self) -> Outcome:
        return "skipped" if self.skipped else self.verdict

    def audit_annotations(self) -> dict[str, str]:
        annotations: dict[str, str] = {}
        violated = sorted({f.policy for f in self.findings})
        if violated:
            annotations["violated-policies"] = ",".join(violated)
        if self.mutated_by:
            annotations["mutated-by"] = ",".join(self.mutated_by)
        if self.exceptions:
            annotations["exceptions"] = ",".join(self.exceptions)
        return annotations

    def record(self) -> DecisionRecord:
        """A flat, JSON-ready record of the decision (the audit journal stores this)."""
        return {
            "time": self.started, "uid": self.uid, "phase": self.phase,
            "operation": self.operation, "group": self.group, "kind": self.kind,
            "namespace": self.namespace, "name": self.name, "user": self.user,
            "groups": list(self.groups), "dry_run": self.dry_run, "allowed": self.allowed,
            "decision": self.verdict, "message": self.message,
            "violations": [f.record() for f in self.findings],
            "mutated_by": list(self.mutated_by), "exceptions": list(self.exceptions),
            "warnings": list(self.warnings),
            "skipped": self.skipped, "duration_ms": round(self.duration * 1000, 3),
        }


def format_violation(policy: str, workload: workloads.Workload, violation: Violation) -> str:
    """`[policy] Kind ns/name /pod/path container "x": what (fix)`."""
    where = workload.kind
    name = workload.name or "(unnamed)"
    where += f" {workload.namespace}/{name}" if workload.namespace else f" {name}"
    if violation.pod:
        where += f" {violation.pod}"
    if violation.container is not None:
        where += f' container "{violation.container}"'
    text = f"[{policy}] {where}: {violation.what}"
    if violation.fix:
        text += f" ({violation.fix})"
    return text

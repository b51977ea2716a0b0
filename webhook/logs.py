"""Structured JSON logs: one object per line, and one INFO line per admission decision.

A decision line carries uid, phase, operation, kind, namespace, name, user, decision,
allowed, duration and the names of the policies involved: enough to find the request in
the journal, never the object itself (objects carry secrets in env and annotations).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

DECISION_LOGGER = "mlgate.decision"
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message"}  # uvicorn adds an ANSI-coloured copy


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields}` on one line."""

    _second = -1
    _stamp = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once per second, not once per line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__.get("fields")
        if isinstance(fields, dict):
            entry.update(fields)  # `name` etc. cannot be passed as LogRecord attributes
        else:
            for key, value in record.__dict__.items():
                if key not in _RESERVED and not key.startswith("_"):
                    entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record (mlgate's and uvicorn's) to `stream` as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True


def decision_fields(decision: Any) -> dict[str, Any]:
    """The fields of a decision's log line (never the object, never messages)."""
    return {
        "uid": decision.uid, "phase": decision.phase, "operation": decision.operation,
        "kind": decision.kind, "namespace": decision.namespace, "name": decision.name,
        "user": decision.user, "decision": decision.outcome,
        "allowed": decision.allowed, "dry_run": decision.dry_run,
        "duration_ms": round(decision.duration * 1000, 3),
        "policies": sorted({f.policy for f in decision.findings}),
        "mutated_by": list(decision.mutated_by),
        "exceptions": list(decision.exceptions),
    }


def log_decision(decision: Any) -> None:
    """A decision observer (`create_app(observers=...)`): one log line per decision."""
    fields = decision_fields(decision)
    logging.getLogger(DECISION_LOGGER).info(
        "%s %s %s %s/%s: %s", fields["phase"], fields["operation"], fields["kind"],
        fields["namespace"] or "-", fields["name"] or "-", fields["decision"],
        extra={"fields": fields})

"""Structured JSON logs: one object per line, and one INFO line per admission decision.

A decision line carries uid, phase, operation, kind, namespace, name, user, decision,
allowed, duration and the names of the policies involved: enough to find the request in
the journal, never the object itself (objects carry secrets in env and annotations).

Decision lines are the one log line per request, so they skip the `logging` machinery when
`configure()` set up the JSON stream: the line is built directly, in the same shape, and
the lines of one event-loop pass are written together with one write and one flush.
"""

from __future__ import annotations

import asyncio
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

    def timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once per second, not once per line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.timestamp(record.created),
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


class _DecisionLines:
    """Decision lines waiting for the end of the current event-loop pass."""

    def __init__(self) -> None:
        self.handler: logging.StreamHandler[TextIO] | None = None  # set by configure()
        self.formatter = JsonFormatter()
        self.pending: list[str] = []

    def add(self, line: str) -> None:
        if not self.pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop: write now
                self.pending.append(line)
                self.flush()
                return
        self.pending.append(line)

    def flush(self) -> None:
        lines, self.pending = self.pending, []
        handler = self.handler
        if not lines or handler is None:
            return
        handler.acquire()  # the same lock as the handler's own lines from other threads
        try:
            handler.stream.write("".join(lines))
            handler.stream.flush()
        except Exception:
            handler.handleError(logging.makeLogRecord({"msg": "decision log write failed"}))
        finally:
            handler.release()


_decision_lines = _DecisionLines()


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record (mlgate's and uvicorn's) to `stream` as JSON lines."""
    _decision_lines.flush()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    _decision_lines.handler = handler
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
    logger = logging.getLogger(DECISION_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = decision_fields(decision)
    message = (f"{fields['phase']} {fields['operation']} {fields['kind']} "
               f"{fields['namespace'] or '-'}/{fields['name'] or '-'}: {fields['decision']}")
    if _decision_lines.handler not in logging.getLogger().handlers:  # logging set up elsewhere
        logger.info("%s", message, extra={"fields": fields})
        return
    entry = {"time": _decision_lines.formatter.timestamp(time.time()), "level": "INFO",
             "logger": DECISION_LOGGER, "message": message, **fields}
    _decision_lines.add(orjson.dumps(entry, default=str).decode() + "\n")

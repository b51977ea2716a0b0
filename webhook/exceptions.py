"""Policy exceptions: a documented, temporary way around named policies for named workloads.

An exception (`exceptions.<name>` in the configuration) names the policies it covers, a
match (namespaces, kinds, names, a label selector; optionally containers), and who asked
for it, why, and until when. It turns the *findings* of those policies into warnings that
name the exception and its expiry; it never stops a mutation (a default that an exempted
workload still gets is harmless, and skipping one would change the object silently).
An exception whose `expires` has passed stops applying by itself: the engine compares it
with the time of each request, so no reload is needed. With `exceptionsRequireAnnotation`
an exception applies only to objects that name it in the `mlgate.io/exception`
annotation, so it never covers an object by accident.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from webhook import kind_table, schema, workloads

ANNOTATION = "mlgate.io/exception"
EXPIRING_DAYS = 14  # the report lists exceptions that expire this soon


def parse_expiry(value: Any) -> dt.datetime:
    """A date (`2026-12-31`: 00:00 UTC that day) or an RFC 3339 time, as an aware datetime."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (dt.date.fromisoformat(text) if len(text) == 10
                     else dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise ValueError(f"{text!r} is not a date; write it like 2026-12-31 or "
                             f"2026-12-31T18:00:00Z") from None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise ValueError("must be a date like 2026-12-31 or a time like 2026-12-31T18:00:00Z")


Expiry = Annotated[dt.datetime, BeforeValidator(parse_expiry)]


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class ExceptionMatch(schema.Model):
    """Which objects an exception covers; every condition given must hold."""

    namespaces: list[str] | None = None  # globs
    kinds: list[kind_table.KindName] | None = None
    names: list[str] | None = None  # globs on metadata.name (or generateName)
    objectSelector: schema.LabelSelector | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ExceptionMatch:
        given = [self.namespaces, self.kinds, self.names, self.objectSelector]
        if all(not condition for condition in given):
            raise ValueError("an empty match would cover every object: give namespaces, "
                             "kinds, names or objectSelector")
        return self


class PolicyException(schema.Model):
    """One entry of `exceptions:`."""

    policies: list[str] = Field(min_length=1)
    match: ExceptionMatch
    containers: list[str] | None = None  # globs; None: the whole object
    reason: str
    owner: str
    expires: Expiry

    _reason = field_validator("reason", "owner")(_text)

    def expired(self, now: float) -> bool:
        return self.expires.timestamp() <= now

    @property
    def until(self) -> str:
        """The expiry as people read it: the date alone when it is midnight UTC."""
        stamp = self.expires.astimezone(dt.UTC)
        if stamp.time() == dt.time(0):
            return stamp.date().isoformat()
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")

    def covers(self, group: str, kind: str, namespace: str, name: str,
               labels: Mapping[str, Any]) -> bool:
        """Whether the object is in this exception's match (not its policies or expiry)."""
        match = self.match
        if match.namespaces is not None and not workloads.glob_matcher(
                tuple(match.namespaces))(namespace):
            return False
        if match.kinds is not None and kind not in match.kinds \
                and f"{group}/{kind}" not in match.kinds:
            return False
        if match.names is not None and not workloads.glob_matcher(tuple(match.names))(name):
            return False
        return match.objectSelector is None or match.objectSelector.matches(labels)

    def covers_container(self, container: str | None) -> bool:
        if self.containers is None:
            return True
        return container is not None and workloads.glob_matcher(
            tuple(self.containers))(container)


def annotated(annotations: Mapping[str, Any]) -> list[str]:
    """The exception names an object's `mlgate.io/exception` annotation lists."""
    value = annotations.get(ANNOTATION)
    if not isinstance(value, str):
        return []
    return [name.strip() for name in value.split(",") if name.strip()]


def check_policies(exceptions: Mapping[str, PolicyException],
                   policies: Iterable[str]) -> list[str]:
    """A key-path error for every exception naming a policy that is not configured."""
    known = set(policies)
    problems = []
    for name, entry in exceptions.items():
        for index, policy in enumerate(entry.policies):
            if policy not in known:
                problems.append(f"exceptions.{name}.policies.{index}: {policy!r} is not a "
                                f"configured policy (configured: {', '.join(sorted(known))})")
    return problems


def summary(exceptions: Mapping[str, PolicyException], now: float) -> list[dict[str, Any]]:
    """Each exception with its state (active, expiring within 14 days, expired)."""
    soon = now + EXPIRING_DAYS * 86400
    rows = []
    for name, entry in sorted(exceptions.items(), key=lambda item: item[1].expires):
        at = entry.expires.timestamp()
        state = "expired" if at <= now else "expiring" if at <= soon else "active"
        rows.append({"name": name, "policies": list(entry.policies), "owner": entry.owner,
                     "reason": entry.reason, "expires": entry.until, "state": state,
                     "days_left": max(int((at - now) // 86400), 0) if at > now else 0})
    return rows

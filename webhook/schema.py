"""The building blocks of every configuration model: one base model, durations,
quantities, label selectors and the fixed vocabularies.

`config`, the audit and signatures settings and every policy's params build on these, so
each idea is defined once and validated the same way everywhere. This module is a leaf:
it imports nothing else from mlgate but `quantity`, so any module may import it without a
cycle. A value outside a vocabulary is refused at load with its key path
(`policies.require-limits.params.containerKinds.0: Input should be 'container', ...`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from webhook import quantity

# -- vocabularies ----------------------------------------------------------------------
Mode = Literal["enforce", "warn", "audit", "off"]
"""What a policy's findings do: deny, warn, only record, or nothing (not run)."""
FindingMode = Literal["enforce", "warn", "audit"]
"""The mode one finding takes effect with (`off` never produces a finding)."""
Phase = Literal["mutate", "validate"]
Failure = Literal["fail", "ignore"]
"""What a policy that raises or times out does: deny (fail closed) or let through."""
ContainerType = Literal["container", "init", "sidecar", "ephemeral"]
"""Which list of the pod spec a container is in (CEL calls it `containerType`)."""
Operation = Literal["CREATE", "UPDATE"]
"""The admission operations mlgate evaluates."""
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

CONTAINER_TYPES: tuple[ContainerType, ...] = ("container", "init", "sidecar", "ephemeral")


class Model(BaseModel):
    """Base of every configuration model: unknown keys are an error, so typos never pass."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- durations ---------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """`500ms`, `2s`, `10m`, `1h`, `30d` (or a number of seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 500ms, 2s, 10m, 1h or 30d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise ValueError(
                f"{value!r} is not a duration; write it like 500ms, 2s, 10m, 1h or 30d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as `500ms`, `2s`, `10m`, `1h`, `30d` or a number."""


# -- quantities --------------------------------------------------------------------------
def check_quantity(value: str) -> str:
    if quantity.parse(value) is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 8Gi, 2)")
    return value


Quantity = Annotated[str, AfterValidator(check_quantity)]
"""A Kubernetes resource quantity as written (`100m`, `1.5Gi`), checked at load."""


# -- label selectors ---------------------------------------------------------------------
class Requirement(Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class LabelSelector(Model):
    """A Kubernetes label selector (matchLabels and matchExpressions, ANDed)."""

    matchLabels: dict[str, str] = {}
    matchExpressions: list[Requirement] = []

    def matches(self, labels: Mapping[str, Any]) -> bool:
        if any(labels.get(k) != v for k, v in self.matchLabels.items()):
            return False
        for req in self.matchExpressions:
            present = req.key in labels
            value = labels.get(req.key)
            if req.operator == "In" and not (present and value in req.values):
                return False
            if req.operator == "NotIn" and present and value in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

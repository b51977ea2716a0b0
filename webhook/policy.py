"""The contract a policy author writes against.

A policy is a class with a `name`, a `phase` (`mutate` or `validate`) and a pydantic
`Params` model. Mutating policies edit the `Workload` views in place; validating policies
yield `Violation`s. Either method may be a coroutine. Policies never see the HTTP layer:
the engine hands them a `Workload`, whose `context` says who asked for what.
"""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from webhook import workloads

Phase = Literal["mutate", "validate"]
T = TypeVar("T")


class Params(BaseModel):
    """Base for policy parameters: unknown keys are an error, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Context = workloads.Context


@dataclass(frozen=True)
class Violation:
    """One thing wrong with an object: what, where and how to fix it."""

    what: str
    fix: str = ""
    path: str = ""  # JSON pointer of the offending field
    container: str | None = None
    pod: str = ""  # pointer of the pod spec it belongs to
    # A milder mode than the policy's for this finding alone (`warn` or `audit`): a rule
    # that only warns inside a policy that enforces. Never stronger than the policy's mode.
    mode: str | None = None

    @classmethod
    def at_container(cls, pod: workloads.PodSpecView, container: workloads.ContainerView,
                     what: str, fix: str = "", *tokens: str | int,
                     mode: str | None = None) -> Violation:
        return cls(what=what, fix=fix, path=container.field_pointer(*tokens),
                   container=container.name, pod=pod.pointer, mode=mode)

    @classmethod
    def at_pod(cls, pod: workloads.PodSpecView, what: str, fix: str = "",
               *tokens: str | int, mode: str | None = None) -> Violation:
        return cls(what=what, fix=fix, path=pod.pointer + workloads.pointer(*tokens),
                   pod=pod.pointer, mode=mode)


def for_namespace(entries: Mapping[str, T], namespace: str) -> T | None:
    """The value of the first key (a namespace glob, in config order) that matches.

    Per-namespace settings of every policy read this way, so `dev-*` before `*` means
    the same thing in all of them.
    """
    for pattern, value in entries.items():
        if fnmatch.fnmatchcase(namespace, pattern):
            return value
    return None


class Policy:
    """Base class of every policy. Subclasses set `name`, `phase` and `Params`."""

    name: ClassVar[str] = ""
    phase: ClassVar[Phase] = "validate"
    Params: ClassVar[type[BaseModel]] = Params
    default_mode: ClassVar[str] = "enforce"
    # True: a sync method may block (I/O, heavy work), so the engine runs it in a worker
    # thread where its timeout can abandon it. False: pure computation on the object that
    # finishes in microseconds; it runs on the event loop, saving the thread hop, and its
    # timeout is checked when it returns. Async methods always run on the loop.
    blocking: ClassVar[bool] = True

    def mutate(self, workload: workloads.Workload, params: Any) -> Any:
        """Edit `workload` in place. May be `async def`."""
        raise NotImplementedError(f"policy {self.name!r} has phase mutate but no mutate()")

    def validate(self, workload: workloads.Workload, params: Any,
                 ) -> Iterable[Violation] | AsyncIterator[Violation] | Any:
        """Yield (or return) `Violation`s. May be `async def` or an async generator."""
        raise NotImplementedError(f"policy {self.name!r} has phase validate but no validate()")

    def setup(self, settings: Any) -> None:
        """Receive the whole validated `config.Config` (shared sections such as
        `registries`) once, before `check_params`. Raise ValueError to reject it."""

    def check_params(self, params: Any) -> None:
        """Reject params that validate as types but make no sense together. Raise ValueError."""

    def close(self) -> None:
        """Release what the policy holds (clients, caches) when a config is replaced."""

"""The contract a policy author writes against.

A policy is a class that subclasses `MutatingPolicy[P]` (edits the `Workload` views in
place) or `ValidatingPolicy[P]` (yields `Violation`s), where `P` is its pydantic params
model. The engine validates the configured params against `P` and constructs the policy
once per configuration with them and an `Environment` (what the policy needs of the rest
of the configuration). `self.params` is then typed as `P`, so mypy checks every access.
Either method may be `async`; `aclose()` releases what the policy holds when a new
configuration replaces it. Policies never see the HTTP layer: the engine hands them a
`Workload`, whose `context` says who asked for what.

```python
class GpuTolerationsParams(policy.Params):
    resources: list[str] = ["nvidia.com/gpu"]

class GpuTolerations(policy.MutatingPolicy[GpuTolerationsParams]):
    name = "gpu-tolerations"

    def mutate(self, workload: workloads.Workload) -> None:
        for pod in workload.pods:
            ...  # self.params.resources is a list[str] here
```

A constructor that rejects params which validate as types but make no sense together
raises `ValueError`; the engine reports it under `policies.<name>.params`.
"""

from __future__ import annotations

import fnmatch
import inspect
import typing
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from webhook import kind_table, schema, workloads
from webhook.signatures import settings as registry_settings

T = TypeVar("T")



class Params(schema.Model):
    """Base of every policy's params model: unknown keys are an error, so typos never pass."""


P = TypeVar("P", bound=Params)

Context = workloads.Context

# The margin kept between a policy's registry budget and the timeouts around it, so that a
# slow registry meets the policy's own message rather than the engine's timeout.
REGISTRY_MARGIN = 0.2


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
    mode: schema.FindingMode | None = None

    @classmethod
    def at_container(cls, pod: workloads.PodSpecView, container: workloads.ContainerView,
                     what: str, fix: str = "", *tokens: str | int,
                     mode: schema.FindingMode | None = None) -> Violation:
        return cls(what=what, fix=fix, path=container.field_pointer(*tokens),
                   container=container.name, pod=pod.pointer, mode=mode)

    @classmethod
    def at_pod(cls, pod: workloads.PodSpecView, what: str, fix: str = "",
               *tokens: str | int, mode: schema.FindingMode | None = None) -> Violation:
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


M = TypeVar("M", bound=schema.Model)


def overlaid(defaults: M, entries: Mapping[str, schema.Model], namespace: str) -> M:
    """`defaults` with the fields set in the namespace's entry (`for_namespace`) laid over
    them: an entry says only what differs in its namespaces."""
    override = for_namespace(entries, namespace)
    for name in override.model_fields_set if override is not None else ():
        setattr(defaults, name, getattr(override, name))
    return defaults


@dataclass(frozen=True)
class Environment:
    """What a policy receives from the configuration besides its own params."""

    name: str = ""  # the key it is configured under (`policies.<name>`)
    timeout: float = 2.0  # `policies.<name>.timeout`
    deadline: float = 4.0  # the whole request's (`deadline`)
    registries: registry_settings.Registries = field(
        default_factory=lambda: registry_settings.Registries.model_validate({}))

    @property
    def registry_budget(self) -> float:
        """Seconds all registry work of one request may take: the smallest of
        `registries.deadline`, this policy's timeout and the request deadline (less a margin)."""
        return max(0.05, min(self.registries.deadline, self.timeout - REGISTRY_MARGIN,
                             self.deadline - REGISTRY_MARGIN))


# Methods and attributes of the contract before policies were generic; a class that still
# has them gets an error that says what to change instead of misbehaving.
_OLD_CONTRACT = {
    "Params": "remove `Params = ...`: the params model is the generic argument "
              "(`ValidatingPolicy[MyParams]`)",
    "phase": "remove `phase = ...`: subclass MutatingPolicy[P] or ValidatingPolicy[P]",
    "check_params": "move `check_params` into `__init__(self, params, env)` (raise ValueError)",
    "setup": "move `setup(config)` into `__init__(self, params, env)`; `env` has registries "
             "and the policy's timeout",
    "close": "rename `close()` to `async def aclose()`",
}


def _params_model(cls: type) -> type[Params] | None:
    """The concrete `P` of `MutatingPolicy[P]` / `ValidatingPolicy[P]` in cls's bases."""
    for base in getattr(cls, "__orig_bases__", ()):
        for arg in typing.get_args(base):
            if inspect.isclass(arg) and issubclass(arg, Params):
                return arg
    return None


class Policy(Generic[P]):
    """What both kinds of policy share. Subclass `MutatingPolicy` or `ValidatingPolicy`."""

    name: ClassVar[str] = ""
    phase: ClassVar[schema.Phase]
    params_model: ClassVar[type[Params]] = Params  # from the generic argument
    default_mode: ClassVar[schema.Mode] = "enforce"
    # True: a sync method may block (I/O, heavy work), so the engine runs it in a worker
    # thread where its timeout can abandon it. False: pure computation on the object that
    # finishes in microseconds; it runs on the event loop, saving the thread hop, and its
    # timeout is checked when it returns. Async methods always run on the loop.
    blocking: ClassVar[bool] = True
    # The kinds of the table (`Kind` or `group/Kind`) the policy judges when its
    # `match.kinds` is unset. None: every kind with pod specs (the workloads), never the
    # kinds without (DRA's ResourceClaim and ResourceClaimTemplate), so a policy about pods
    # or workload labels does not start judging claims; a policy about claims names them.
    default_kinds: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:  # MutatingPolicy and ValidatingPolicy themselves
            return
        changes = [fix for attr, fix in _OLD_CONTRACT.items() if attr in vars(cls)]
        for method in ("mutate", "validate"):
            function = vars(cls).get(method)
            if callable(function) and len(inspect.signature(function).parameters) > 2:
                changes.append(f"drop the params argument of {method}(); read self.params")
        if changes:
            raise TypeError(
                f"policy class {cls.__qualname__} is written against the old mlgate policy "
                f"contract: " + "; ".join(changes))
        for kind in cls.default_kinds or ():
            try:
                kind_table.check_kind_name(kind)
            except ValueError as exc:
                raise TypeError(f"policy class {cls.__qualname__}: default_kinds: {exc}") from exc
        model = _params_model(cls)
        if model is not None:
            cls.params_model = model

    def __init__(self, params: P, env: Environment | None = None) -> None:
        self.params = params
        self.env = env if env is not None else Environment(name=self.name)

    async def aclose(self) -> None:
        """Release what the policy holds (clients, caches) when a config is replaced."""


class MutatingPolicy(Policy[P]):
    """A policy that edits the object: `mutate` changes the `Workload` views in place."""

    phase: ClassVar[schema.Phase] = "mutate"
    # True: `mutate` edits only inside the dicts the views hold (it may add keys and list
    # items anywhere, but never replaces or removes a pod spec, a container, a template or
    # a list of containers, nor changes replicas), so the views stay true after it and the
    # engine hands the same ones to the next policy instead of building them again.
    edits_in_place: ClassVar[bool] = False

    def mutate(self, workload: workloads.Workload) -> None | Awaitable[None]:
        """Edit `workload` in place. May be `async def`."""
        raise NotImplementedError(f"policy {self.name!r} has no mutate()")


ValidateResult = Iterable[Violation] | AsyncIterator[Violation] | Awaitable[Iterable[Violation]]


class ValidatingPolicy(Policy[P]):
    """A policy that judges the object: `validate` yields a `Violation` per finding."""

    phase: ClassVar[schema.Phase] = "validate"

    def validate(self, workload: workloads.Workload) -> ValidateResult:
        """Yield (or return) `Violation`s. May be `async def` or an async generator."""
        raise NotImplementedError(f"policy {self.name!r} has no validate()")

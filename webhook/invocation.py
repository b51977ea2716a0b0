"""Calling one policy: in a worker thread or on the loop, within its timeout, and what a
policy that raises or runs out of time turns into (its failure mode).

A sync method of a `blocking` policy runs in a worker thread of admission's own pool
(`PolicyThreads`, `policyThreads` in the config), where its timeout can abandon it: no
journal write or audit query runs there, so none can make a policy wait for a thread. A
non-blocking one runs on the event loop and its timeout is checked when it returns; async
methods always run on the loop. Whatever the policy raises becomes a `PolicyError`, which
`failure()` turns into a finding: the policy's mode when its failure mode is `fail`, a
warning when it is `ignore`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook import config, decisions, errors, policy, schema, workloads
from webhook.policy import Violation

log = logging.getLogger("mlgate.engine")


@dataclass
class ActivePolicy:
    """A policy as configured: the instance (bound to its params), mode and match."""

    name: str
    policy: policy.Policy[Any]
    mode: schema.Mode
    settings: config.PolicySettings

    @property
    def phase(self) -> schema.Phase:
        return self.policy.phase


@functools.lru_cache(maxsize=512)
def _is_async_function(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def _is_async(method: Any) -> bool:
    """Whether a (bound) policy method is a coroutine or async generator function."""
    return _is_async_function(getattr(method, "__func__", method))


async def _collect(result: Any) -> list[Violation]:
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return []
    if hasattr(result, "__aiter__"):
        return [v async for v in result]
    return list(result)


def _materialise(result: Any) -> Any:
    """Run a sync generator (or other lazy iterable) to completion where the policy runs,
    so that its work counts against the policy's own timeout."""
    if (isinstance(result, Iterable) and not isinstance(result, list | tuple)
            and not hasattr(result, "__aiter__")):
        return list(result)
    return result


class PolicyThreads:
    """Admission's own bounded pool for the sync methods of blocking policies: a service of
    the server (its size is read at start; stopped at shutdown). A thread a timed-out policy
    still holds stays taken until the policy returns, so a pool of its own keeps such
    policies from taking the threads of anything else, and anything else from taking theirs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.executor = concurrent.futures.ThreadPoolExecutor(
            size, thread_name_prefix="mlgate-policy")

    async def start(self) -> None:
        log.info("blocking policies run in %d threads of their own (policyThreads)", self.size)

    async def stop(self) -> None:
        # Do not wait for a policy stuck past its timeout: the process is leaving.
        self.executor.shutdown(wait=False, cancel_futures=True)


async def call(active: ActivePolicy, method: Any, workload: workloads.Workload,
               deadline: float, executor: concurrent.futures.Executor | None = None) -> Any:
    """Call a policy method within its timeout; sync methods of blocking policies run in
    `executor` (admission's `PolicyThreads`; None: the loop's default, for `mlgate check`)."""
    timeout = min(active.settings.timeout, deadline - time.perf_counter())
    if timeout <= 0:
        raise errors.PolicyError(active.name, "no time left before the request deadline")
    try:
        if _is_async(method):
            return await asyncio.wait_for(_collect(method(workload)), timeout)
        if not active.policy.blocking:
            started = time.perf_counter()
            result = _materialise(method(workload))
            if time.perf_counter() - started > timeout:
                raise TimeoutError
            return await _collect(result)
        loop = asyncio.get_running_loop()
        result = await asyncio.wait_for(
            loop.run_in_executor(executor, lambda: _materialise(method(workload))), timeout)
        return await asyncio.wait_for(_collect(result), timeout)
    except TimeoutError as exc:
        raise errors.PolicyError(active.name, f"timed out after {timeout:.3g}s") from exc
    except errors.PolicyError:
        raise
    except Exception as exc:
        raise errors.PolicyError(active.name, f"{type(exc).__name__}: {exc}") from exc


def failure(active: ActivePolicy, workload: workloads.Workload,
            exc: errors.PolicyError) -> decisions.Finding:
    """The finding a failed policy leaves: its mode when failure is fail, else a warning."""
    log.error("policy %s failed on %s %s/%s: %s", active.name, workload.kind,
              workload.namespace, workload.name, exc.reason)
    fail = active.settings.failure == "fail"
    what = (f"the policy failed ({exc.reason}); failure mode "
            f"{'fail denies the request' if fail else 'ignore lets it through'}")
    fix = "see the mlgate logs; set failure: ignore to let requests through on errors"
    message = decisions.format_violation(active.name, workload, Violation(what=what, fix=fix))
    mode = active.mode if fail else ("audit" if active.mode == "audit" else "warn")
    return decisions.Finding(active.name, mode, message, error=True)

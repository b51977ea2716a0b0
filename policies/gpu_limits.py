"""Cap accelerators per container, per pod and per workload; allow resource names by namespace.

GPUs are the scarce resource of an ML cluster. One PyTorchJob with 64 workers of 8 GPUs
can take a whole cluster, and a quota on pods does not see that its templates multiply:
this policy counts what the whole workload will ask for (replicas x pods of every role,
RayCluster groups at their maxReplicas, JobSet replicas x parallelism) and compares it to
a cap. Per namespace it also says which accelerator resources may be used (e.g. MIG
slices only in `dev-*`), rejects fractional amounts (device plugins hand out whole
devices), and rejects pods that ask for two resource names no node offers together
(`nvidia.com/gpu` next to the time-sliced `nvidia.com/gpu.shared`).

A pod's count follows the scheduler: the sum over its containers and sidecars, or the
largest init container if that is more. Caps default to none and every resource name is
allowed; whole numbers and the conflicts are checked by default.

DRA claims count too (`webhook.accelerators`): a pod claim whose template asks for two
`gpu.nvidia.com` devices is two `nvidia.com/gpu`, once per pod however many containers
share it, and in each container's count that uses it. `allocationMode: All` cannot be
held to a cap unless `dra.countAll` says what it counts as: where a cap applies, it is
denied.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Generator, Iterator

from pydantic import Field

from webhook import accelerators, policy, quantity, workloads


class Limits(policy.Params):
    maxPerContainer: int | None = Field(None, ge=0, description="Accelerators one container "
                                                                "may ask for (unset: no cap).")
    maxPerPod: int | None = Field(None, ge=0, description="Accelerators one pod may ask for.")
    maxPerWorkload: int | None = Field(
        None, ge=0, description="Accelerators the whole workload may ask for (every role x "
                                "its replicas).")
    allowed: list[str] | None = Field(
        None, description="Accelerator resource names (globs) that may be used; unset: any.")


class Params(Limits):
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Resource names (globs) counted as accelerators.")
    namespaces: dict[str, Limits] = Field(
        default_factory=dict,
        description="Namespace glob -> limits overriding the top-level ones there (first "
                    "matching glob; unset fields keep the top-level value).")
    conflicts: list[list[str]] = Field(
        default_factory=lambda: [["nvidia.com/gpu", "nvidia.com/gpu.shared"]],
        description="Groups of resource globs a pod must not mix (whole vs time-sliced GPUs).")


def _where(namespace: str) -> str:
    return f" in namespace {namespace}" if namespace else ""


def effective(params: Params, namespace: str) -> Limits:
    """The top-level limits with the first matching namespace entry laid over them."""
    defaults = Limits(maxPerContainer=params.maxPerContainer, maxPerPod=params.maxPerPod,
                      maxPerWorkload=params.maxPerWorkload, allowed=params.allowed)
    return policy.overlaid(defaults, params.namespaces, namespace)


class GpuLimits(policy.ValidatingPolicy[Params]):
    """Reject accelerator asks above the caps, of disallowed names, fractional or conflicting."""

    name = "gpu-limits"
    blocking = False

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        for index, group in enumerate(params.conflicts):
            if len(group) < 2:
                raise ValueError(f"conflicts[{index}]: a conflict needs two or more resource "
                                 f"names, got {group}")

    def validate(self, workload: workloads.Workload,
                 ) -> Iterator[policy.Violation]:
        namespace = workload.namespace
        limits = effective(self.params, namespace)
        total = 0
        roles: list[str] = []
        for pod in workload.pods:
            count = yield from self._pod(pod, limits, namespace)
            if count:
                total += count * pod.replicas
                roles.append(f"{pod.role}: {count} x {pod.replicas} pod"
                             f"{'s' if pod.replicas != 1 else ''}")
        cap = limits.maxPerWorkload
        if cap is not None and total > cap:
            yield policy.Violation(
                what=f"the workload asks for {total} accelerators in total ({'; '.join(roles)}); "
                     f"at most {cap} are allowed per workload{_where(namespace)}",
                fix="lower the replicas or the accelerators per pod, or ask the platform team "
                    "for a higher gpu-limits maxPerWorkload", path="/spec")

    def _pod(self, pod: workloads.PodSpecView, limits: Limits,
             namespace: str) -> Generator[policy.Violation, None, int]:
        claims = accelerators.pod_claims(pod, self.params.accelerators)
        claim_asks = [ask for asks in claims.asks.values() for ask in asks]
        yield from self._claims(pod, claim_asks, limits, namespace)
        regular, init = 0, 0
        for container in pod.containers:
            count = yield from self._container(pod, container, claims, limits, namespace)
            if container.container_type in (workloads.CONTAINER, workloads.SIDECAR):
                regular += count
            elif container.container_type == workloads.INIT:
                init = max(init, count)
        pod_count = max(regular, init) + (accelerators.total(claim_asks) or 0)
        if limits.maxPerPod is not None and pod_count > limits.maxPerPod:
            yield policy.Violation.at_pod(
                pod, f"the pod ({pod.role}) asks for {pod_count} accelerators"
                     f"{_through(claim_asks)}; at most {limits.maxPerPod} are allowed per pod"
                     f"{_where(namespace)}",
                "spread the work over more pods with fewer accelerators each"
                + (", or lower the count of the claim's request" if claim_asks else ""))
        names = {ask.resource for ask in claim_asks}
        for container in pod.containers:
            names |= container.resource_names()
        for group in self.params.conflicts:
            hit = sorted({n for n in names for p in group if fnmatch.fnmatchcase(n, p)})
            patterns_hit = [p for p in group if any(fnmatch.fnmatchcase(n, p) for n in hit)]
            if len(patterns_hit) > 1:
                yield policy.Violation.at_pod(
                    pod, f"the pod asks for {' and '.join(hit)}, which no node offers together "
                         f"(whole and shared/time-sliced devices)",
                    f"request only one of {', '.join(group)}")
        return pod_count

    def _claims(self, pod: workloads.PodSpecView, asks: list[accelerators.Ask], limits: Limits,
                namespace: str) -> Iterator[policy.Violation]:
        """Device classes not allowed here, and unbounded asks where a cap applies."""
        caps = [f"{cap} per {level}" for level, cap in (
            ("container", limits.maxPerContainer), ("pod", limits.maxPerPod),
            ("workload", limits.maxPerWorkload)) if cap is not None]
        for ask in asks:
            if limits.allowed is not None and not accelerators.is_accelerator(
                    ask.resource, limits.allowed):
                yield policy.Violation(
                    what=f"{ask.where} asks for {ask.resource}, which is not allowed"
                         f"{_where(namespace)} (allowed: {', '.join(limits.allowed) or 'none'})",
                    fix="use a device class that stands for one of "
                        f"{', '.join(limits.allowed)}" if limits.allowed
                    else "run accelerator workloads in a namespace that allows them",
                    path=ask.pointer, pod=pod.pointer)
            if ask.count is None and caps:
                yield policy.Violation(
                    what=f"{ask.where} asks for every matching device on the node "
                         f"(allocationMode: All), which cannot be held to the cap of "
                         f"{' and '.join(caps)} accelerators{_where(namespace)}",
                    fix="ask for an exact number (allocationMode: ExactCount, count: N), or "
                        "have the platform team set dra.countAll",
                    path=ask.pointer, pod=pod.pointer)

    def _container(self, pod: workloads.PodSpecView,
                   container: workloads.ContainerView, claims: accelerators.PodClaims,
                   limits: Limits, namespace: str) -> Generator[policy.Violation, None, int]:
        """Checks one container; returns its extended-resource count (claims are the pod's)."""
        count = 0
        found = accelerators.extended(container, self.params.accelerators)
        for resource in found:
            if limits.allowed is not None and not accelerators.is_accelerator(
                    resource, limits.allowed):
                section = "limits" if resource in container.limits else "requests"
                yield policy.Violation.at_container(
                    pod, container, f"{resource} is not allowed{_where(namespace)} (allowed: "
                                    f"{', '.join(limits.allowed) or 'none'})",
                    f"request one of {', '.join(limits.allowed)} instead" if limits.allowed
                    else "run accelerator workloads in a namespace that allows them",
                    "resources", section, resource)
            amount = None
            for section, values in (("limits", container.limits),
                                    ("requests", container.requests)):
                if resource not in values:
                    continue
                value = values[resource]
                if not quantity.is_whole(value):
                    yield policy.Violation.at_container(
                        pod, container, f"{resource} {section[:-1]} is {value!r}, not a whole "
                                        f"number", "accelerators are allocated whole: write 1, "
                                        "2, ...; for a fraction use a MIG or shared resource",
                        "resources", section, resource)
                elif amount is None:
                    amount = int(quantity.parse(value) or 0)
            count += amount or 0
        used = [ask for ask in accelerators.container_asks(
            pod, container, self.params.accelerators, claims)
            if ask.via == accelerators.CLAIM]
        with_claims = count + (accelerators.total(used) or 0)
        if limits.maxPerContainer is not None and with_claims > limits.maxPerContainer:
            names = sorted(set(found) | {ask.resource for ask in used})
            yield policy.Violation.at_container(
                pod, container, f"asks for {with_claims} accelerators ({', '.join(names)})"
                                f"{_through(used)}; at most {limits.maxPerContainer} are "
                                f"allowed per container{_where(namespace)}",
                f"lower resources.limits{' or the count of the claim' if used else ''} "
                f"to {limits.maxPerContainer} or fewer accelerators",
                "resources", "limits")
        return count


def _through(asks: list[accelerators.Ask]) -> str:
    """` (through <claim, request, count x class>; ...)` for asks that come from claims."""
    described = [ask.where for ask in asks if ask.count is not None]
    return f" (through {'; '.join(described)})" if described else ""

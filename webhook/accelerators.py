"""The accelerators of a pod spec, however they are asked for: one model for every policy.

A pod asks for GPUs in two ways. Extended resources: `resources.limits` (or requests) of
a container name `nvidia.com/gpu: 2`. Dynamic Resource Allocation: a container lists
`resources.claims`, the pod's `resourceClaims` name a ResourceClaim or template, whose
device requests name a DeviceClass that `dra.Resolver` maps to a resource name. Both
become `Ask`s (resource, count, where), so `gpu-tolerations`, `gpu-limits` and the others
see a claim for two `gpu.nvidia.com` devices as two `nvidia.com/gpu`.

Counting follows the scheduler: containers add up (the largest init container if more),
and a pod claim is allocated once per pod however many containers share it. The
alternatives of a `firstAvailable` request count as the largest of them; `allocationMode:
All` counts as `dra.countAll`, else as unbounded (`None`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from webhook import dra, quantity, workloads

# Resource names device plugins register (globs): NVIDIA (whole GPUs and MIG slices),
# AMD, Intel, Habana Gaudi, AWS Neuron and Google TPU. `nvidia.com/mig` is what the
# default `dra.deviceClasses` map NVIDIA's `mig.nvidia.com` class to.
DEFAULT_ACCELERATORS: list[str] = [
    "nvidia.com/gpu",
    "nvidia.com/mig",
    "nvidia.com/mig-*",
    "amd.com/gpu",
    "gpu.intel.com/*",
    "habana.ai/gaudi",
    "aws.amazon.com/neuron*",
    "google.com/tpu",
]

EXTENDED = "resources"
CLAIM = "claim"


@dataclass(frozen=True)
class Ask:
    """Some accelerators asked for in one place."""

    resource: str
    count: int | None  # None: unbounded (allocationMode All without dra.countAll)
    via: str  # EXTENDED or CLAIM
    where: str  # for messages: `resources.limits` or the claim, request and device class
    pointer: str
    key: str = ""  # asks with one key are alternatives (firstAvailable): the largest counts
    claim: str = ""  # the pod claim's name (CLAIM only)


@dataclass
class PodClaims:
    """What a pod's claims ask for, by pod claim name, and the claims mlgate cannot find."""

    asks: dict[str, list[Ask]] = field(default_factory=dict)
    missing: list[dra.PodClaim] = field(default_factory=list)


def is_accelerator(resource: str, patterns: list[str]) -> bool:
    return workloads.glob_matcher(tuple(patterns))(resource)


def extended(container: workloads.ContainerView, patterns: list[str]) -> list[str]:
    """Accelerator resource names in the container's `resources.limits`/`requests`."""
    return sorted(r for r in container.resource_names() if is_accelerator(r, patterns))


def _extended_asks(container: workloads.ContainerView, patterns: list[str]) -> list[Ask]:
    asks = []
    for resource in extended(container, patterns):
        for section, values in (("limits", container.limits), ("requests", container.requests)):
            if resource in values:
                amount = quantity.parse(values[resource])
                count = int(amount) if amount is not None and amount == int(amount) else 0
                asks.append(Ask(resource, count, EXTENDED, f"resources.{section}",
                                container.field_pointer("resources", section, resource)))
                break
    return asks


def pod_claims(pod: workloads.PodSpecView, patterns: list[str]) -> PodClaims:
    """Resolve every pod claim to its accelerator asks (none without a resolver)."""
    found = PodClaims()
    resolver = pod.claims
    if resolver is None:
        return found
    for claim in dra.pod_claims(pod):
        obj = resolver.lookup(pod.namespace, claim)
        if obj is None:
            found.missing.append(claim)
            continue
        asks = found.asks.setdefault(claim.name, [])
        for request in dra.requests(dra.claim_spec(obj)):
            for choice in request.choices:
                resource = resolver.resource_of(choice.device_class)
                if resource is None or not is_accelerator(resource, patterns):
                    continue
                count = choice.count if choice.count is not None else resolver.settings.countAll
                amount = "all" if choice.count is None else str(choice.count)
                where = (f"{claim.describe}, request {choice.name!r}: {amount} x "
                         f"{choice.device_class}")
                asks.append(Ask(resource, count, CLAIM, where, claim.pointer,
                                key=f"{claim.name}/{request.name}", claim=claim.name))
    return found


def container_asks(pod: workloads.PodSpecView, container: workloads.ContainerView,
                   patterns: list[str],
                   claims: PodClaims | None = None) -> list[Ask]:
    """What one container asks for: its extended resources and the claims it uses."""
    asks = _extended_asks(container, patterns)
    claims = claims if claims is not None else pod_claims(pod, patterns)
    for name, request in dra.container_claims(container):
        for ask in claims.asks.get(name, []):
            if not request or ask.key == f"{name}/{request}" or ask.key.startswith(
                    f"{name}/{request}/"):
                asks.append(ask)
    return asks


def total(asks: Iterable[Ask]) -> int | None:
    """The sum of the asks, alternatives counting as their largest; None when unbounded."""
    by_key: dict[str, int | None] = {}
    result = 0
    for ask in asks:
        if not ask.key:
            if ask.count is None:
                return None
            result += ask.count
            continue
        if ask.key in by_key and by_key[ask.key] is None:
            continue
        by_key[ask.key] = None if ask.count is None else max(by_key.get(ask.key) or 0, ask.count)
    for count in by_key.values():
        if count is None:
            return None
        result += count
    return result


def pod_total(pod: workloads.PodSpecView, patterns: list[str],
              claims: PodClaims | None = None) -> int | None:
    """Accelerators one pod takes: containers (or the largest init container) plus claims."""
    regular, init = 0, 0
    for container in pod.containers:
        count = total(_extended_asks(container, patterns))
        assert count is not None  # extended resources are always bounded
        if container.container_type in (workloads.CONTAINER, workloads.SIDECAR):
            regular += count
        elif container.container_type == workloads.INIT:
            init = max(init, count)
    claims = claims if claims is not None else pod_claims(pod, patterns)
    from_claims = total(ask for asks in claims.asks.values() for ask in asks)
    return None if from_claims is None else max(regular, init) + from_claims


def by_resource(asks: Iterable[Ask]) -> dict[str, int | None]:
    """Resource -> count (None: unbounded) of some asks."""
    grouped: dict[str, list[Ask]] = {}
    for ask in asks:
        grouped.setdefault(ask.resource, []).append(ask)
    return {resource: total(group) for resource, group in sorted(grouped.items())}


def container_accelerators(container: workloads.ContainerView, patterns: list[str],
                           pod: workloads.PodSpecView | None = None) -> list[str]:
    """Accelerator resources the container asks for: its extended resources and, given
    its pod, the resources of the claims it uses."""
    if pod is None:
        return extended(container, patterns)
    return sorted({a.resource for a in container_asks(pod, container, patterns)})


def pod_accelerators(pod: workloads.PodSpecView, patterns: list[str]) -> list[str]:
    """Accelerator resources any container of the pod, or any pod claim, asks for."""
    found = set(pod.resources_matching(patterns))
    for asks in pod_claims(pod, patterns).asks.values():
        found.update(ask.resource for ask in asks)
    return sorted(found)


def pod_resources(pod: workloads.PodSpecView, patterns: list[str]) -> dict[str, int | None]:
    """Resource -> count the pod takes (containers as the scheduler sums them, plus claims)."""
    claims = pod_claims(pod, patterns)
    regular: dict[str, int] = {}
    init: dict[str, int] = {}
    for container in pod.containers:
        for resource, count in by_resource(_extended_asks(container, patterns)).items():
            if container.container_type == workloads.INIT:
                init[resource] = max(init.get(resource, 0), count or 0)
            elif container.container_type != workloads.EPHEMERAL:
                regular[resource] = regular.get(resource, 0) + (count or 0)
    result: dict[str, int | None] = {r: max(regular.get(r, 0), init.get(r, 0))
                                     for r in sorted(set(regular) | set(init))}
    for resource, count in by_resource(a for asks in claims.asks.values() for a in asks).items():
        before = result.get(resource, 0)
        result[resource] = None if count is None or before is None else before + count
    return result

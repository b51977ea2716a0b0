"""Fill in missing CPU/memory requests (and, if configured, limits), LimitRanger style.

A container without requests is scheduled as if it needed nothing, then gets evicted
first; defaults make the scheduler's picture honest. The rules are LimitRanger's: a
limit without a request gets request = limit; with neither, the default request (and the
default limit, never below the request). Accelerators cannot be overcommitted, so a GPU
request without a limit (or the reverse) is completed with the same amount.
"""

from __future__ import annotations

from pydantic import Field

from webhook import accelerators, policy, quantity, schema, workloads


class Defaults(policy.Params):
    requests: dict[str, schema.Quantity] = Field(
        default_factory=dict, description="Default requests, e.g. {cpu: 100m}.")
    limits: dict[str, schema.Quantity] = Field(
        default_factory=dict, description="Default limits, e.g. {memory: 4Gi}.")


class Params(policy.Params):
    default: Defaults = Field(
        default_factory=lambda: Defaults(requests={"cpu": "100m", "memory": "256Mi"}),
        description="Defaults for containers of pods without accelerators.")
    accelerator: Defaults | None = Field(
        None, description="Defaults for containers of accelerator pods (unset: same as default).")
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Accelerator resources (globs); their request and limit are made equal.")
    containerKinds: list[schema.ContainerType] = Field(
        default_factory=lambda: [workloads.CONTAINER, workloads.INIT, workloads.SIDECAR],
        description="Container kinds that get defaults (ephemeral containers cannot).")


def _bigger(a: str, b: str) -> str:
    qa, qb = quantity.parse(a), quantity.parse(b)
    return a if qa is not None and qb is not None and qa > qb else b


class DefaultResources(policy.MutatingPolicy[Params]):
    """Default container requests/limits, separately for accelerator and other pods."""

    name = "default-resources"
    blocking = False
    edits_in_place = True

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        for label, defaults in (("default", params.default), ("accelerator", params.accelerator)):
            if defaults is None:
                continue
            for resource, request in defaults.requests.items():
                limit = defaults.limits.get(resource)
                if limit is not None and _bigger(request, limit) == request and request != limit:
                    raise ValueError(f"{label}: request {request} of {resource} is above the "
                                     f"limit {limit}")

    def mutate(self, workload: workloads.Workload) -> None:
        params = self.params
        for pod in workload.pods:
            gpu = bool(accelerators.pod_accelerators(pod, params.accelerators))
            defaults = params.accelerator if gpu and params.accelerator else params.default
            resources = sorted(set(defaults.requests) | set(defaults.limits))
            for container in pod.containers:
                if container.container_type in params.containerKinds:
                    self._fill(container, defaults, resources, params.accelerators if gpu else [])

    def _fill(self, container: workloads.ContainerView, defaults: Defaults,
              resources: list[str], patterns: list[str]) -> None:
        requests, limits = container.requests, container.limits
        for resource in resources:
            request, limit = requests.get(resource), limits.get(resource)
            if request is None:
                request = str(limit) if limit is not None else defaults.requests.get(resource)
                if request is not None:
                    container.set_resource("requests", resource, request)
            if limit is None and resource in defaults.limits:
                default_limit = defaults.limits[resource]
                limit = _bigger(request, default_limit) if request else default_limit
                container.set_resource("limits", resource, limit)
        for resource in accelerators.extended(container, patterns):
            request, limit = container.requests.get(resource), container.limits.get(resource)
            if request is None and limit is not None:
                container.set_resource("requests", resource, str(limit))
            elif limit is None and request is not None:
                container.set_resource("limits", resource, str(request))

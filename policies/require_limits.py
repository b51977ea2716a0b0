"""Every container declares CPU and memory limits; accelerators are whole and request = limit.

Without limits one runaway data loader can starve a shared GPU node of memory, and the
scheduler cannot pack GPU nodes well. Accelerators cannot be overcommitted, so Kubernetes
requires their request to equal their limit, and device plugins hand out whole devices.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from webhook import accelerators, policy, quantity, schema, workloads

EXAMPLES = {"cpu": "500m", "memory": "1Gi"}


class Params(policy.Params):
    resources: list[str] = Field(default_factory=lambda: ["cpu", "memory"],
                                 description="Resources every container must limit.")
    containerKinds: list[schema.ContainerType] = Field(
        default_factory=lambda: [workloads.CONTAINER, workloads.INIT, workloads.SIDECAR],
        description="Container kinds checked (container, init, sidecar, ephemeral).")
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Accelerator resources (globs) whose request must equal the limit.")


class RequireLimits(policy.ValidatingPolicy[Params]):
    """Reject containers without limits, and accelerator requests that differ from limits."""

    name = "require-limits"
    blocking = False

    def validate(self, workload: workloads.Workload) -> Iterator[policy.Violation]:
        for pod, container in workload.containers():
            if container.container_type not in self.params.containerKinds:
                continue
            limits, requests = container.limits, container.requests
            for resource in self.params.resources:
                if resource not in limits:
                    example = EXAMPLES.get(resource, "<amount>")
                    yield policy.Violation.at_container(
                        pod, container, f"no {resource} limit",
                        f"set resources.limits.{resource}, e.g. {resource}: {example}",
                        "resources", "limits", resource)
            # Claims (DRA) carry counts, not request/limit pairs: these rules are about
            # the extended resources of the container.
            accelerator_resources = accelerators.extended(container, self.params.accelerators)
            for resource in accelerator_resources:
                request, limit = requests.get(resource), limits.get(resource)
                for section, value in (("limits", limit), ("requests", request)):
                    if value is not None and not quantity.is_whole(value):
                        yield policy.Violation.at_container(
                            pod, container, f"{resource} {section[:-1]} is {value!r}, "
                            f"not a whole number",
                            "accelerators are allocated whole; use 1, 2, ...",
                            "resources", section, resource)
                if limit is None:
                    yield policy.Violation.at_container(
                        pod, container, f"{resource} is requested ({request!r}) without a limit",
                        f"set resources.limits.{resource}: {request!r}",
                        "resources", "limits", resource)
                elif request is not None and quantity.parse(request) != quantity.parse(limit):
                    yield policy.Violation.at_container(
                        pod, container,
                        f"{resource} request {request!r} differs from limit {limit!r}",
                        "accelerators cannot be overcommitted; make request equal to limit",
                        "resources", "requests", resource)

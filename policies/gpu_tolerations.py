"""Tolerate the accelerator taints on every pod that asks for an accelerator.

GPU nodes are tainted so that CPU-only pods stay off them; a pod that requests
`nvidia.com/gpu` must tolerate that taint or it stays Pending. Like the in-tree
ExtendedResourceToleration plugin, the toleration's key is the resource name.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from webhook import accelerators, policy, schema, workloads


class Params(policy.Params):
    resources: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Accelerator resource names (globs) whose taint is tolerated.")
    effect: schema.TaintEffect = Field(
        "NoSchedule", description="Effect of the added tolerations.")
    extraTolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="More tolerations added to every accelerator pod (e.g. a GPU pool taint).")


class GpuTolerations(policy.MutatingPolicy[Params]):
    """Add `{key: <resource>, operator: Exists}` tolerations to accelerator pods."""

    name = "gpu-tolerations"
    blocking = False
    edits_in_place = True

    def mutate(self, workload: workloads.Workload) -> None:
        for pod in workload.pods:
            found = accelerators.pod_accelerators(pod, self.params.resources)
            if not found:
                continue
            for resource in found:
                pod.tolerate(key=resource, operator="Exists", effect=self.params.effect)
            tolerations = pod.list_field("tolerations")
            for extra in self.params.extraTolerations:
                if extra not in tolerations:
                    tolerations.append(dict(extra))

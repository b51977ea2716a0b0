"""Cap how many accelerator pods one workload may start.

A PyTorchJob with 64 GPU workers passes every per-pod check and still takes the whole
pool. This policy counts the pods that ask for an accelerator, across every role and its
replicas, and refuses the workload above the budget (per namespace when configured).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from webhook import accelerators, policy, workloads


class GpuPodBudgetParams(policy.Params):
    maxPods: int = Field(8, ge=1, description="Accelerator pods one workload may start.")
    namespaces: dict[str, int] = Field(
        default_factory=dict, description="Namespace glob -> budget there (first match).")
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Resource names (globs) that make a pod an accelerator pod.")


class GpuPodBudget(policy.ValidatingPolicy[GpuPodBudgetParams]):
    """Refuse workloads that would start more accelerator pods than the budget."""

    name = "gpu-pod-budget"
    blocking = False  # pure computation on the object: run it on the event loop

    def __init__(self, params: GpuPodBudgetParams, env: policy.Environment | None = None,
                 ) -> None:
        super().__init__(params, env)
        for pattern, budget in params.namespaces.items():
            if budget < 1:
                raise ValueError(f"namespaces.{pattern}: a budget is at least 1, got {budget}")

    def validate(self, workload: workloads.Workload) -> Iterator[policy.Violation]:
        budget = policy.for_namespace(self.params.namespaces, workload.namespace)
        budget = budget or self.params.maxPods
        roles = [pod for pod in workload.pods
                 if accelerators.pod_accelerators(pod, self.params.accelerators)]
        total = sum(pod.replicas for pod in roles)
        if total > budget:
            parts = ", ".join(f"{pod.role}: {pod.replicas}" for pod in roles)
            yield policy.Violation(
                what=f"{total} accelerator pods ({parts}) exceed the budget of {budget}",
                fix=f"run at most {budget} accelerator pods, or ask the platform team for a "
                    f"larger budget in policies.{self.env.name}.params",
                path="/spec")

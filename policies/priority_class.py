"""Default the pod priority class by what the workload is: training, inference, notebook.

On a full GPU cluster the scheduler preempts by priority, so an inference server that
runs at the same priority as a week-long training sweep waits behind it, and a notebook
can evict either. Platform teams define PriorityClasses per workload class; users forget
to set them. This policy sets `priorityClassName` on every pod spec that has none, from
the workload class in the kind table (`training`, `inference`, `batch`, `service`,
`other`) or `notebook` for pods carrying a notebook label (Kubeflow's notebook controller
sets `notebook-name`). A pod spec that sets `priorityClassName`, or a bare `priority`
(which the Priority admission plugin would reject next to a class), is left alone. The
defaults set nothing: a class that does not exist in the cluster makes the API server
reject every pod.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from webhook import policy, workloads

WorkloadClass = Literal["training", "inference", "batch", "service", "notebook", "other"]


class Params(policy.Params):
    classes: dict[WorkloadClass, str] = Field(
        default_factory=dict,
        description="Workload class -> priorityClassName, e.g. {training: ml-training, "
                    "inference: ml-serving, notebook: ml-interactive}.")
    namespaces: dict[str, dict[WorkloadClass, str]] = Field(
        default_factory=dict,
        description="Namespace glob -> classes overriding `classes` there (first match).")
    notebookLabels: list[str] = Field(
        default_factory=lambda: ["notebook-name"],
        description="Pod template label keys that mark a notebook.")


class PriorityClass(policy.MutatingPolicy[Params]):
    """Set `priorityClassName` by workload class on pod specs that have none."""

    name = "priority-class"
    blocking = False
    edits_in_place = True

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        tables = {"classes": params.classes}
        tables.update({f"namespaces.{k}": v for k, v in params.namespaces.items()})
        for where, table in tables.items():
            for cls, name in table.items():
                if not name or name != name.lower() or " " in name:
                    raise ValueError(f"{where}.{cls}: {name!r} is not a PriorityClass name "
                                     f"(lower-case DNS subdomain)")

    def table(self, namespace: str) -> dict[str, str]:
        table = {str(cls): name for cls, name in self.params.classes.items()}
        override = policy.for_namespace(self.params.namespaces, namespace) or {}
        table.update({str(cls): name for cls, name in override.items()})
        return table

    def mutate(self, workload: workloads.Workload) -> None:
        table = self.table(workload.namespace)
        if not table:
            return
        entry = workload.kind_spec
        kind_class = entry.workload_class if entry is not None else "other"
        for pod in workload.pods:
            if pod.spec.get("priorityClassName") or pod.spec.get("priority") is not None:
                continue
            labels = pod.labels
            notebook = any(key in labels for key in self.params.notebookLabels)
            name = table.get("notebook") if notebook else None
            name = name or table.get(kind_class)
            if name:
                pod.spec["priorityClassName"] = name

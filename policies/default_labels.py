"""Carry ownership labels down to the pods, and give workloads a default Kueue queue.

Cost reports, quotas and dashboards group pods by labels such as `team` and
`cost-center`. Users put them on the Job or PyTorchJob they write, but the pods its
controller creates only carry the template's labels, so GPU hours end up unattributed.
This policy copies the configured keys from the object (or, failing that, from the
per-namespace configuration) onto every pod template that lacks them.

Kueue admits only workloads that name a LocalQueue in `kueue.x-k8s.io/queue-name`; a
namespace default means users need not know the queue. The label goes on the object
Kueue manages, only on CREATE (Kueue forbids changing the queue of a running workload),
and only for the kinds Kueue integrates with. A label already set is never changed.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from webhook import kind_table, policy, workloads

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Kinds whose object Kueue reads the queue label from (Pods, and pod groups via the pod
# integration, included). CronJob carries it on its jobTemplate.
KUEUE_KINDS = [
    "Pod", "batch/Job", "batch/CronJob", "JobSet", "PyTorchJob", "TFJob", "MPIJob", "XGBoostJob",
    "PaddleJob", "JAXJob", "RayJob", "RayCluster", "Deployment", "StatefulSet",
    "LeaderWorkerSet",
]
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       rf"{_NAME}$")
LABEL_VALUE = re.compile(rf"^({_NAME})?$")


class Params(policy.Params):
    copyLabels: list[str] = Field(
        default_factory=lambda: ["team", "cost-center"],
        description="Object label keys copied onto pod templates that lack them.")
    namespaceLabels: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Namespace glob -> labels for pod templates (first matching glob); "
                    "the object's own value of a copied key wins.")
    queueNames: dict[str, str] = Field(
        default_factory=dict,
        description="Namespace glob -> default Kueue LocalQueue (first matching glob).")
    queueKinds: list[kind_table.KindName] = Field(
        default_factory=lambda: list(KUEUE_KINDS),
        description="Kinds (Kind or group/Kind) that get the default queue label.")


def _labels_of(holder: dict[str, Any]) -> dict[str, Any]:
    meta = holder.get("metadata")
    if not isinstance(meta, dict):
        meta = holder["metadata"] = {}
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        labels = meta["labels"] = {}
    return labels


class DefaultLabels(policy.MutatingPolicy[Params]):
    """Copy team/cost labels onto pod templates; default the Kueue queue per namespace."""

    name = "default-labels"
    blocking = False
    edits_in_place = True

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        for key in params.copyLabels:
            if not LABEL_KEY.match(key):
                raise ValueError(f"copyLabels: {key!r} is not a valid label key")
        for pattern, labels in params.namespaceLabels.items():
            for key, value in labels.items():
                if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
                    raise ValueError(f"namespaceLabels.{pattern}: {key}={value!r} is not a "
                                     f"valid label (63 characters at most, alphanumeric at "
                                     f"both ends)")
        for pattern, queue in params.queueNames.items():
            if not queue or not LABEL_VALUE.match(queue):
                raise ValueError(f"queueNames.{pattern}: {queue!r} is not a valid queue name")

    def mutate(self, workload: workloads.Workload) -> None:
        namespace = workload.namespace
        wanted = dict(policy.for_namespace(self.params.namespaceLabels, namespace) or {})
        own = workload.labels
        for key in self.params.copyLabels:
            value = own.get(key)
            if isinstance(value, str):
                wanted[key] = value
        for pod in workload.pods:
            present = pod.labels
            for key, value in wanted.items():
                if key not in present:
                    pod.set_label(key, value)
        self._queue(workload, namespace)

    def _queue(self, workload: workloads.Workload, namespace: str) -> None:
        kind = workload.kind
        queue_kinds = self.params.queueKinds
        if workload.context.operation != "CREATE" or not (
                kind in queue_kinds or f"{workload.group}/{kind}" in queue_kinds):
            return
        queue = policy.for_namespace(self.params.queueNames, namespace)
        if queue is None:
            return
        holder: dict[str, Any] = workload.obj
        if workload.kind == "CronJob" and workload.group == "batch":
            spec = workload.obj.get("spec")
            job_template = spec.get("jobTemplate") if isinstance(spec, dict) else None
            if not isinstance(job_template, dict):
                return
            holder = job_template
        meta = holder.get("metadata")
        labels = meta.get("labels") if isinstance(meta, dict) else None
        if isinstance(labels, dict) and QUEUE_LABEL in labels:
            return
        _labels_of(holder)[QUEUE_LABEL] = queue

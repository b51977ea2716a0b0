"""Wrap one pod spec into every kind of the workload table, for policy tests.

`wrap(spec, key)` puts a deep copy of `spec` wherever that kind keeps pod specs (every role
of a training job, head and workers of a RayCluster, ...), so one assertion can be checked
on every kind. KServe components and Argo templates inline the pod fields; Argo templates
hold their first container under `container` and the rest as `sidecars`.
"""

from __future__ import annotations

import copy
from typing import Any

from webhook import workloads

JSON = dict[str, Any]


def _template(spec: JSON) -> JSON:
    return {"metadata": {"labels": {"app": "x"}}, "spec": copy.deepcopy(spec)}


def _jobset_spec(spec: JSON) -> JSON:
    return {"replicatedJobs": [
        {"name": "node", "replicas": 2,
         "template": {"spec": {"parallelism": 2, "template": _template(spec)}}}]}


def _ray(spec: JSON) -> JSON:
    return {"headGroupSpec": {"template": _template(spec)},
            "workerGroupSpecs": [{"groupName": "gpu", "replicas": 2,
                                  "template": _template(spec)}]}


def _argo_templates(spec: JSON) -> list[JSON]:
    containers = copy.deepcopy(spec.get("containers") or [])
    template: JSON = {k: copy.deepcopy(v) for k, v in spec.items() if k != "containers"}
    template["name"] = "main"
    if containers:
        template["container"] = containers[0]
        if containers[1:]:
            template["sidecars"] = containers[1:]
    return [{"name": "entry", "steps": [[{"name": "run", "template": "main"}]]}, template]


def _kserve(spec: JSON) -> JSON:
    return {"predictor": copy.deepcopy(spec)}


def body(spec: JSON, kind: workloads.KindSpec) -> JSON:
    """The `spec` of an object of `kind` whose pod specs are all `spec`."""
    k = kind.kind
    if kind.group == "" and k == "Pod":
        return copy.deepcopy(spec)
    if k in ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController", "DaemonSet"):
        return {"replicas": 2, "template": _template(spec)}
    if kind.group == "batch" and k == "Job":
        return {"template": _template(spec)}
    if k == "CronJob":
        return {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": _template(spec)}}}
    if kind.group == "kubeflow.org":
        field = workloads.KUBEFLOW_JOBS[k][1]
        return {field: {"Master": {"replicas": 1, "template": _template(spec)},
                        "Worker": {"replicas": 3, "template": _template(spec)}}}
    if k in ("TrainingRuntime", "ClusterTrainingRuntime"):
        return {"template": {"spec": _jobset_spec(spec)}}
    if k == "JobSet":
        return _jobset_spec(spec)
    if k == "LeaderWorkerSet":
        return {"replicas": 2, "leaderWorkerTemplate": {
            "size": 4, "leaderTemplate": _template(spec), "workerTemplate": _template(spec)}}
    if k == "RayCluster":
        return _ray(spec)
    if k == "RayJob":
        return {"entrypoint": "python train.py", "rayClusterSpec": _ray(spec),
                "submitterPodTemplate": _template(spec)}
    if k == "RayService":
        return {"rayClusterConfig": _ray(spec)}
    if k == "InferenceService":
        return _kserve(spec)
    if kind.group == "batch.volcano.sh":
        return {"tasks": [{"name": "worker", "replicas": 2, "template": _template(spec)}]}
    if k in ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate"):
        return {"entrypoint": "entry", "templates": _argo_templates(spec)}
    if k == "CronWorkflow":
        return {"schedule": "0 * * * *",
                "workflowSpec": {"entrypoint": "entry", "templates": _argo_templates(spec)}}
    raise AssertionError(f"no wrapper for {kind.group}/{k}: add one")


VERSIONS = {"": "v1", "apps": "v1", "batch": "v1", "kubeflow.org": "v1",
            "trainer.kubeflow.org": "v1alpha1", "jobset.x-k8s.io": "v1alpha2",
            "leaderworkerset.x-k8s.io": "v1", "ray.io": "v1", "serving.kserve.io": "v1beta1",
            "serving.kubeflow.org": "v1beta1", "batch.volcano.sh": "v1alpha1",
            "argoproj.io": "v1alpha1"}


def wrap(spec: JSON, kind: workloads.KindSpec, name: str = "work",
         namespace: str = "ml") -> JSON:
    api = f"{kind.group}/{VERSIONS[kind.group]}" if kind.group else "v1"
    meta: JSON = {"name": name}
    if not kind.kind.startswith("Cluster"):
        meta["namespace"] = namespace
    return {"apiVersion": api, "kind": kind.kind, "metadata": meta, "spec": body(spec, kind)}


def ids() -> list[str]:
    return [f"{k.group or 'core'}/{k.kind}" for k in workloads.KINDS]

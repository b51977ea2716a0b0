"""Hypothesis strategies: random pod specs inside random workload kinds, random reviews.

Pod specs are valid against the Kubernetes OpenAPI schema (kubernetes-validate checks
the generated objects too), but use every shape the API accepts: quantities as ints,
floats and strings, nulls for optional fields, init containers, native sidecars
(restartPolicy: Always), ephemeral containers, tolerations of every operator and effect.
Each kind in the workload table has a builder that puts pod specs where that kind keeps
them, with the kind's own replica fields.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from webhook import kind_table

JSON = dict[str, Any]

RESOURCES = ["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu", "amd.com/gpu",
             "nvidia.com/mig-1g.5gb", "gpu.intel.com/i915", "habana.ai/gaudi",
             "aws.amazon.com/neuroncore", "google.com/tpu", "example.com/fpga"]
QUANTITIES = st.one_of(
    st.integers(0, 16),
    st.sampled_from(["0", "1", "2", "8", "100m", "250m", "0.5", "1.5", "64Mi", "1Gi", "2G",
                     "1e3", "+1", "1k", "500Mi"]),
    st.sampled_from([0.5, 1.25, 2.0]),
)
IMAGES = st.sampled_from(["registry.example.com/ml/train:1.0", "nvcr.io/nvidia/pytorch:24.05-py3",
                          "busybox", "ghcr.io/acme/app@sha256:" + "a" * 64, "vllm/vllm-openai"])
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)


def _optional(strategy: st.SearchStrategy[Any], *, null: bool = True) -> st.SearchStrategy[Any]:
    """A value, or a null (the API treats null like an absent optional field), or absent."""
    options = [strategy, st.just(_ABSENT)]
    if null:
        options.append(st.none())
    return st.one_of(*options)


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _compact(**fields: Any) -> JSON:
    return {k: v for k, v in fields.items() if v is not _ABSENT}


resource_maps = st.dictionaries(st.sampled_from(RESOURCES), QUANTITIES, max_size=4)


@st.composite
def resources(draw: st.DrawFn) -> Any:
    return draw(_optional(st.builds(
        lambda requests, limits: _compact(requests=requests, limits=limits),
        _optional(resource_maps), _optional(resource_maps))))


@st.composite
def containers(draw: st.DrawFn, name: str, sidecar_possible: bool = False) -> JSON:
    container = _compact(
        name=name,
        image=draw(_optional(IMAGES, null=False)),
        command=draw(_optional(st.lists(st.sampled_from(["python", "train.py", "-c"]),
                                        max_size=3))),
        resources=draw(resources()),
        ports=draw(_optional(st.lists(st.builds(lambda p: {"containerPort": p},
                                                st.integers(1, 65535)), max_size=2))),
    )
    if sidecar_possible and draw(st.booleans()):
        container["restartPolicy"] = "Always"
    return container


tolerations = st.builds(
    lambda key, operator, value, effect, seconds: _compact(
        key=key, operator=operator, value=value, effect=effect, tolerationSeconds=seconds),
    _optional(st.sampled_from(["nvidia.com/gpu", "amd.com/gpu", "", "dedicated",
                               "google.com/tpu"])),
    _optional(st.sampled_from(["Exists", "Equal"])),
    _optional(st.sampled_from(["", "present", "gpu"])),
    _optional(st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule", ""])),
    _optional(st.integers(0, 3600)),
)


@st.composite
def pod_specs(draw: st.DrawFn) -> JSON:
    """A core PodSpec: 1-3 containers, maybe init/sidecar and ephemeral containers."""
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    count = draw(st.integers(1, min(3, len(names))))
    spec: JSON = {"containers": [draw(containers(n)) for n in names[:count]]}
    rest = names[count:]
    if rest and draw(st.booleans()):
        split = draw(st.integers(0, len(rest)))
        spec["initContainers"] = [draw(containers(n, sidecar_possible=True)) for n in rest[:split]]
        if split < len(rest):
            spec["ephemeralContainers"] = [
                {"name": n, "image": draw(IMAGES), "targetContainerName": names[0]}
                for n in rest[split:]]
    for key, strategy in (("tolerations", st.lists(tolerations, max_size=3)),
                          ("nodeSelector", st.dictionaries(
                              st.sampled_from(["nvidia.com/gpu.present", "pool"]),
                              st.sampled_from(["true", "gpu"]), max_size=2)),
                          ("initContainers", st.none()), ("ephemeralContainers", st.none())):
        if key not in spec:
            value = draw(_optional(strategy))
            if value is not _ABSENT:
                spec[key] = value
    return spec


def _template(spec: JSON, labels: JSON | None = None) -> JSON:
    template: JSON = {"spec": spec}
    if labels is not None:
        template["metadata"] = {"labels": labels}
    return template


def _container_of(spec: JSON) -> JSON:
    """An inline container (KServe framework key, Argo container) from a pod spec's first."""
    return copy.deepcopy(spec["containers"][0])


Builder = Callable[[st.DrawFn, JSON], JSON]
LABELS = {"app": "trainer"}


def _count(draw: st.DrawFn) -> Any:
    return draw(_optional(st.integers(0, 8), null=False))


def _pod(draw: st.DrawFn, meta: JSON) -> JSON:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "labels": LABELS},
            "spec": draw(pod_specs())}


def _apps(kind: str, api_version: str = "apps/v1") -> Builder:
    def build(draw: st.DrawFn, meta: JSON) -> JSON:
        spec: JSON = _compact(replicas=_count(draw) if kind != "DaemonSet" else _ABSENT,
                              template=_template(draw(pod_specs()), LABELS))
        if api_version == "v1":
            spec["selector"] = dict(LABELS)
        else:
            spec["selector"] = {"matchLabels": dict(LABELS)}
        if kind == "StatefulSet":
            spec["serviceName"] = "trainer"
        return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}
    return build


def _job(draw: st.DrawFn, meta: JSON) -> JSON:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": _compact(parallelism=_count(draw), template=_template(draw(pod_specs())))}


def _cronjob(draw: st.DrawFn, meta: JSON) -> JSON:
    job = _compact(parallelism=_count(draw), template=_template(draw(pod_specs()), LABELS))
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": job}}}


KUBEFLOW_ROLES = ["Master", "Worker", "Launcher", "Chief", "PS", "Evaluator", "Scheduler"]


def _kubeflow(kind: str, field_name: str) -> Builder:
    def build(draw: st.DrawFn, meta: JSON) -> JSON:
        roles = draw(st.lists(st.sampled_from(KUBEFLOW_ROLES), min_size=1, max_size=3,
                              unique=True))
        version = "kubeflow.org/v2beta1" if kind == "MPIJob" and draw(st.booleans()) \
            else "kubeflow.org/v1"
        return {"apiVersion": version, "kind": kind, "metadata": meta, "spec": {field_name: {
            role: _compact(replicas=_count(draw), restartPolicy="OnFailure",
                           template=_template(draw(pod_specs())))
            for role in roles}}}
    return build


@st.composite
def _replicated_jobs(draw: st.DrawFn) -> list[JSON]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    return [_compact(name=name, replicas=_count(draw), template={"spec": _compact(
        parallelism=_count(draw), template=_template(draw(pod_specs())))}) for name in names]


def _training_runtime(kind: str) -> Builder:
    def build(draw: st.DrawFn, meta: JSON) -> JSON:
        if kind.startswith("Cluster"):
            meta = {k: v for k, v in meta.items() if k != "namespace"}
        return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": kind, "metadata": meta,
                "spec": {"mlPolicy": {"numNodes": 1},
                         "template": {"spec": {"replicatedJobs": draw(_replicated_jobs())}}}}
    return build


def _jobset(draw: st.DrawFn, meta: JSON) -> JSON:
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta,
            "spec": {"replicatedJobs": draw(_replicated_jobs())}}


def _lws(draw: st.DrawFn, meta: JSON) -> JSON:
    lwt: JSON = _compact(size=_count(draw), workerTemplate=_template(draw(pod_specs())))
    if draw(st.booleans()):
        lwt["leaderTemplate"] = _template(draw(pod_specs()), {"role": "leader"})
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": meta, "spec": _compact(replicas=_count(draw), leaderWorkerTemplate=lwt)}


@st.composite
def _ray_cluster(draw: st.DrawFn) -> JSON:
    groups = draw(st.lists(NAMES, max_size=2, unique=True))
    return {"rayVersion": "2.9.0",
            "headGroupSpec": {"rayStartParams": {}, "template": _template(draw(pod_specs()))},
            "workerGroupSpecs": [
                _compact(groupName=g, replicas=_count(draw), maxReplicas=_count(draw),
                         numOfHosts=_count(draw), rayStartParams={},
                         template=_template(draw(pod_specs()))) for g in groups]}


def _ray(kind: str) -> Builder:
    def build(draw: st.DrawFn, meta: JSON) -> JSON:
        if kind == "RayCluster":
            spec = draw(_ray_cluster())
        elif kind == "RayJob":
            spec = {"entrypoint": "python train.py", "rayClusterSpec": draw(_ray_cluster())}
            if draw(st.booleans()):
                spec["submitterPodTemplate"] = _template(draw(pod_specs()))
        else:
            spec = {"serveConfigV2": "applications: []", "rayClusterConfig": draw(_ray_cluster())}
        return {"apiVersion": "ray.io/v1", "kind": kind, "metadata": meta, "spec": spec}
    return build


def _kserve(group: str) -> Builder:
    def build(draw: st.DrawFn, meta: JSON) -> JSON:
        spec: JSON = {}
        for component in ("predictor", "transformer", "explainer"):
            if component != "predictor" and draw(st.booleans()):
                continue
            pod = draw(pod_specs())
            pod.pop("ephemeralContainers", None)  # not a KServe component field
            framework = draw(st.sampled_from(
                {"predictor": ["model", "pytorch", "sklearn", None],
                 "transformer": [None],
                 "explainer": ["art", "alibi", None]}[component]))
            if framework is not None:
                inline = _container_of(pod)
                inline.pop("name")
                inline["storageUri"] = "gs://models/example"
                if framework == "model":
                    inline["modelFormat"] = {"name": "pytorch"}
                pod[framework] = inline
                if draw(st.booleans()):
                    del pod["containers"]
            pod.update(_compact(minReplicas=_count(draw), maxReplicas=_count(draw)))
            if draw(st.booleans()):
                pod["labels"] = {"team": "ml"}
            spec[component] = pod
        return {"apiVersion": f"{group}/v1beta1", "kind": "InferenceService", "metadata": meta,
                "spec": spec}
    return build


def _volcano(draw: st.DrawFn, meta: JSON) -> JSON:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    return {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": meta,
            "spec": {"schedulerName": "volcano", "tasks": [
                _compact(name=n, replicas=_count(draw), template=_template(draw(pod_specs())))
                for n in names]}}


@st.composite
def _argo_templates(draw: st.DrawFn) -> list[JSON]:
    templates: list[JSON] = [{"name": "main", "steps": [[{"name": "s", "template": "t0"}]]}]
    for index in range(draw(st.integers(1, 3))):
        pod = draw(pod_specs())
        template: JSON = {"name": f"t{index}"}
        style = draw(st.sampled_from(["container", "script", "containerSet"]))
        if style == "containerSet":
            template["containerSet"] = {"containers": copy.deepcopy(pod["containers"])}
        else:
            inline = _container_of(pod)
            if style == "script":
                inline["source"] = "print('hi')"
            template[style] = inline
        for init in pod.get("initContainers") or []:
            target = "sidecars" if init.pop("restartPolicy", None) else "initContainers"
            template.setdefault(target, []).append(init)
        if pod.get("tolerations") is not None:
            template["tolerations"] = pod["tolerations"]
        templates.append(template)
    templates.append({"name": "cleanup", "resource": {"action": "delete",
                                                      "manifest": "kind: ConfigMap"}})
    return templates


def _argo(kind: str) -> Builder:
    def build(draw: st.DrawFn, meta: JSON) -> JSON:
        if kind == "ClusterWorkflowTemplate":
            meta = {k: v for k, v in meta.items() if k != "namespace"}
        spec: JSON = {"entrypoint": "main", "templates": draw(_argo_templates())}
        if kind == "CronWorkflow":
            spec = {"schedule": "0 * * * *", "workflowSpec": spec}
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": meta,
                "spec": spec}
    return build


BUILDERS: dict[tuple[str, str], Builder] = {
    ("", "Pod"): _pod,
    ("", "ReplicationController"): _apps("ReplicationController", "v1"),
    ("apps", "Deployment"): _apps("Deployment"),
    ("apps", "StatefulSet"): _apps("StatefulSet"),
    ("apps", "DaemonSet"): _apps("DaemonSet"),
    ("apps", "ReplicaSet"): _apps("ReplicaSet"),
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cronjob,
    **{("kubeflow.org", kind): _kubeflow(kind, field)
       for kind, (_, field) in kind_table.KUBEFLOW_JOBS.items()},
    ("trainer.kubeflow.org", "TrainingRuntime"): _training_runtime("TrainingRuntime"),
    ("trainer.kubeflow.org", "ClusterTrainingRuntime"): _training_runtime("ClusterTrainingRuntime"),
    ("jobset.x-k8s.io", "JobSet"): _jobset,
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): _lws,
    ("ray.io", "RayCluster"): _ray("RayCluster"),
    ("ray.io", "RayJob"): _ray("RayJob"),
    ("ray.io", "RayService"): _ray("RayService"),
    ("serving.kserve.io", "InferenceService"): _kserve("serving.kserve.io"),
    ("serving.kubeflow.org", "InferenceService"): _kserve("serving.kubeflow.org"),
    ("batch.volcano.sh", "Job"): _volcano,
    ("argoproj.io", "Workflow"): _argo("Workflow"),
    ("argoproj.io", "WorkflowTemplate"): _argo("WorkflowTemplate"),
    ("argoproj.io", "ClusterWorkflowTemplate"): _argo("ClusterWorkflowTemplate"),
    ("argoproj.io", "CronWorkflow"): _argo("CronWorkflow"),
}


@st.composite
def workload_objects(draw: st.DrawFn) -> JSON:
    """An object of a random kind from the table, holding random pod specs."""
    spec = draw(st.sampled_from(kind_table.WORKLOAD_KINDS))
    meta = {"name": draw(NAMES), "namespace": "ml"}
    return BUILDERS[(spec.group, spec.kind)](draw, meta)


# -- reviews ---------------------------------------------------------------------------
garbage = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=8,
)
REQUEST_KEYS = ["uid", "kind", "resource", "requestKind", "name", "namespace", "operation",
                "userInfo", "object", "oldObject", "dryRun", "options", "subResource"]

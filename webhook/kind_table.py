"""The kind table: where pod specs live in every supported kind, and how to find them.

One table (`KINDS`) says, for each (API group, kind), how to find every pod spec inside
an object, with its JSON pointer, its role and how many pods it stands for; `view()` turns
an object into the `workloads.Workload` a policy sees. Supporting a new kind is one entry
here. The webhook rules of the Helm chart and the cluster scan are generated from it.

A few kinds hold no pod spec at all (`pod_specs=False`): DRA's ResourceClaim and
ResourceClaimTemplate, which say which devices pods get. They are in the table so that
the webhook, the scan, `mlgate check` and the configuration's kind names know them, but
only policies that name them (`Policy.default_kinds`, or `match.kinds`) judge them; the
mutating webhook does not receive them (`webhook_rules(mutating=True)`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator

from webhook import workloads

JSON = workloads.JSON
Pods = Iterator[workloads.PodSpecView]  # what a finder yields: every pod spec of an object


_dict, _list = workloads.as_dict, workloads.as_list


def _count(value: Any, default: int = 1) -> int:
    is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if is_count else default


Finder = Callable[[JSON], Pods]


@dataclass(frozen=True)
class KindSpec:
    """One supported kind: its group, kind, plural resource and how to find pod specs."""

    group: str
    kind: str
    resource: str
    find: Finder = field(repr=False)
    template_mutable: bool = False  # may an UPDATE change the pod template?
    workload_class: str = "other"  # training | inference | batch | service | other
    # False: a kind without pod specs (DRA claims), seen only by the policies naming it
    pod_specs: bool = True


def core_pod(spec: JSON, ptr: str, role: str, replicas: int = 1, holder: JSON | None = None,
             ) -> workloads.PodSpecView:
    """A view of a core PodSpec dict: containers, init containers (and sidecars), ephemeral."""
    pod = workloads.PodSpecView(spec=spec, pointer=ptr, role=role, replicas=replicas,
                                metadata_holder=holder)
    containers = pod.containers
    for index, container in enumerate(_list(spec.get("containers"))):
        if isinstance(container, dict):
            containers.append(workloads.ContainerView(
                container, f"{ptr}/containers/{index}", workloads.CONTAINER))
    for index, container in enumerate(_list(spec.get("initContainers"))):
        if isinstance(container, dict):
            sidecar = container.get("restartPolicy") == "Always"
            containers.append(workloads.ContainerView(
                container, f"{ptr}/initContainers/{index}",
                workloads.SIDECAR if sidecar else workloads.INIT))
    for index, container in enumerate(_list(spec.get("ephemeralContainers"))):
        if isinstance(container, dict):
            containers.append(workloads.ContainerView(
                container, f"{ptr}/ephemeralContainers/{index}", workloads.EPHEMERAL))
    return pod


def _template(template: Any, ptr: str, role: str, replicas: int = 1) -> Pods:
    """A PodTemplateSpec (`{metadata, spec}`) at `ptr`."""
    template = _dict(template)
    if template is None:
        return
    spec = _dict(template.get("spec"))
    if spec is not None:
        yield core_pod(spec, ptr + "/spec", role, replicas, holder=template)


def _at(obj: JSON, *keys: str) -> Any:
    value: Any = obj
    for key in keys:
        value = _dict(value)
        if value is None:
            return None
        value = value.get(key)
    return value


def _find_pod(obj: JSON) -> Pods:
    spec = _dict(obj.get("spec"))
    if spec is not None:
        yield core_pod(spec, "/spec", "pod", holder=obj)


def _find_template(obj: JSON) -> Pods:
    yield from _template(_at(obj, "spec", "template"), "/spec/template", "template",
                         _count(_at(obj, "spec", "replicas")))


def _find_job(obj: JSON) -> Pods:
    yield from _template(_at(obj, "spec", "template"), "/spec/template", "template",
                         _count(_at(obj, "spec", "parallelism")))


def _find_daemonset(obj: JSON) -> Pods:
    yield from _template(_at(obj, "spec", "template"), "/spec/template", "template")


def _find_cronjob(obj: JSON) -> Pods:
    yield from _template(_at(obj, "spec", "jobTemplate", "spec", "template"),
                         "/spec/jobTemplate/spec/template", "template",
                         _count(_at(obj, "spec", "jobTemplate", "spec", "parallelism")))


def _replica_specs(field_name: str) -> Finder:
    """Kubeflow training jobs: `spec.<x>ReplicaSpecs.<role>.template`."""

    def find(obj: JSON) -> Pods:
        specs = _dict(_at(obj, "spec", field_name)) or {}
        for role, replica_spec in specs.items():
            replica_spec = _dict(replica_spec)
            if replica_spec is None:
                continue
            ptr = workloads.pointer("spec", field_name, role, "template")
            yield from _template(replica_spec.get("template"), ptr, role,
                                 _count(replica_spec.get("replicas")))

    return find


def _jobset_jobs(jobset_spec: Any, ptr: str) -> Pods:
    for index, job in enumerate(_list(_at({"s": jobset_spec}, "s", "replicatedJobs"))):
        job = _dict(job)
        if job is None:
            continue
        role = str(job.get("name") or index)
        job_spec = _dict(_at(job, "template", "spec")) or {}
        replicas = _count(job.get("replicas")) * _count(job_spec.get("parallelism"))
        yield from _template(job_spec.get("template"),
                             f"{ptr}/replicatedJobs/{index}/template/spec/template", role, replicas)


def _find_jobset(obj: JSON) -> Pods:
    yield from _jobset_jobs(obj.get("spec"), "/spec")


def _find_training_runtime(obj: JSON) -> Pods:
    yield from _jobset_jobs(_at(obj, "spec", "template", "spec"), "/spec/template/spec")


def _find_lws(obj: JSON) -> Pods:
    lwt = _dict(_at(obj, "spec", "leaderWorkerTemplate")) or {}
    groups = _count(_at(obj, "spec", "replicas"))
    size = _count(lwt.get("size"))
    ptr = "/spec/leaderWorkerTemplate"
    if _dict(lwt.get("leaderTemplate")) is not None:
        yield from _template(lwt.get("leaderTemplate"), ptr + "/leaderTemplate", "leader", groups)
        yield from _template(lwt.get("workerTemplate"), ptr + "/workerTemplate", "worker",
                             groups * max(size - 1, 0))
    else:
        yield from _template(lwt.get("workerTemplate"), ptr + "/workerTemplate", "worker",
                             groups * size)


def _ray_cluster(cluster_spec: Any, ptr: str) -> Pods:
    cluster_spec = _dict(cluster_spec) or {}
    yield from _template(_at(cluster_spec, "headGroupSpec", "template"),
                         ptr + "/headGroupSpec/template", "head")
    for index, group in enumerate(_list(cluster_spec.get("workerGroupSpecs"))):
        group = _dict(group)
        if group is None:
            continue
        replicas = max(_count(group.get("replicas")), _count(group.get("maxReplicas"), 0))
        replicas *= _count(group.get("numOfHosts"))
        role = str(group.get("groupName") or f"worker-{index}")
        yield from _template(group.get("template"), f"{ptr}/workerGroupSpecs/{index}/template",
                             role, replicas)


def _find_raycluster(obj: JSON) -> Pods:
    yield from _ray_cluster(obj.get("spec"), "/spec")


def _find_rayjob(obj: JSON) -> Pods:
    yield from _ray_cluster(_at(obj, "spec", "rayClusterSpec"), "/spec/rayClusterSpec")
    yield from _template(_at(obj, "spec", "submitterPodTemplate"), "/spec/submitterPodTemplate",
                         "submitter")


def _find_rayservice(obj: JSON) -> Pods:
    yield from _ray_cluster(_at(obj, "spec", "rayClusterConfig"), "/spec/rayClusterConfig")


# KServe: every key of a component that is not a pod or component field is a framework
# (an inline container): sklearn, pytorch, model, ... (and alibi/art for explainers).
KSERVE_FRAMEWORKS = (
    "model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "pmml",
    "lightgbm", "paddle", "huggingface", "alibi", "art",
)


def _find_inferenceservice(obj: JSON) -> Pods:
    for component in ("predictor", "transformer", "explainer"):
        spec = _dict(_at(obj, "spec", component))
        if spec is None:
            continue
        ptr = workloads.pointer("spec", component)
        replicas = max(_count(spec.get("minReplicas")), _count(spec.get("maxReplicas"), 0))
        pod = core_pod(spec, ptr, component, replicas)
        pod.labels_inline = True
        framework_containers = [
            workloads.ContainerView(value, f"{ptr}/{key}", workloads.CONTAINER)
            for key in KSERVE_FRAMEWORKS
            if isinstance(value := spec.get(key), dict)
        ]
        pod.containers[:0] = framework_containers
        yield pod
        worker = _dict(spec.get("workerSpec")) if component == "predictor" else None
        if worker is not None:
            # Multi-node serving: the predictor pod is the head, and the worker pods make up
            # the rest of pipelineParallelSize (counted as at least one when set at all).
            workers = max(_count(worker.get("pipelineParallelSize")) - 1, 1)
            yield core_pod(worker, ptr + "/workerSpec", "predictor-worker", replicas * workers)


def _find_volcano_job(obj: JSON) -> Pods:
    for index, task in enumerate(_list(_at(obj, "spec", "tasks"))):
        task = _dict(task)
        if task is None:
            continue
        yield from _template(task.get("template"), f"/spec/tasks/{index}/template",
                             str(task.get("name") or index), _count(task.get("replicas")))


def _argo_templates(templates: Any, ptr: str) -> Pods:
    """Argo templates that run a pod: `container`, `script` or `containerSet`."""
    for index, template in enumerate(_list(templates)):
        template = _dict(template)
        if template is None:
            continue
        tptr = f"{ptr}/{index}"
        pod = workloads.PodSpecView(spec=template, pointer=tptr,
                                    role=str(template.get("name") or index),
                                    metadata_holder=template)
        containers = pod.containers
        for key in ("container", "script"):
            if isinstance(value := template.get(key), dict):
                containers.append(workloads.ContainerView(
                    value, f"{tptr}/{key}", workloads.CONTAINER))
        for cindex, container in enumerate(_list(_at(template, "containerSet", "containers"))):
            if isinstance(container, dict):
                containers.append(workloads.ContainerView(
                    container, f"{tptr}/containerSet/containers/{cindex}", workloads.CONTAINER))
        if not containers:
            continue  # steps, dag, resource, suspend: no pod of their own
        for cindex, container in enumerate(_list(template.get("initContainers"))):
            if isinstance(container, dict):
                containers.append(workloads.ContainerView(
                    container, f"{tptr}/initContainers/{cindex}", workloads.INIT))
        for cindex, container in enumerate(_list(template.get("sidecars"))):
            if isinstance(container, dict):
                containers.append(workloads.ContainerView(
                    container, f"{tptr}/sidecars/{cindex}", workloads.SIDECAR))
        yield pod


def _find_workflow(obj: JSON) -> Pods:
    yield from _argo_templates(_at(obj, "spec", "templates"), "/spec/templates")


def _find_cronworkflow(obj: JSON) -> Pods:
    yield from _argo_templates(_at(obj, "spec", "workflowSpec", "templates"),
                               "/spec/workflowSpec/templates")


def _no_pods(obj: JSON) -> Pods:
    """Kinds without pod specs: a view with the object and no pods."""
    yield from ()


KUBEFLOW_JOBS = {
    "PyTorchJob": ("pytorchjobs", "pytorchReplicaSpecs"),
    "TFJob": ("tfjobs", "tfReplicaSpecs"),
    "MPIJob": ("mpijobs", "mpiReplicaSpecs"),
    "XGBoostJob": ("xgboostjobs", "xgbReplicaSpecs"),
    "PaddleJob": ("paddlejobs", "paddleReplicaSpecs"),
    "JAXJob": ("jaxjobs", "jaxReplicaSpecs"),
    "MXJob": ("mxjobs", "mxReplicaSpecs"),
}

KINDS: tuple[KindSpec, ...] = (
    KindSpec("", "Pod", "pods", _find_pod),
    KindSpec("", "ReplicationController", "replicationcontrollers", _find_template, True,
             "service"),
    KindSpec("apps", "Deployment", "deployments", _find_template, True, "service"),
    KindSpec("apps", "StatefulSet", "statefulsets", _find_template, True, "service"),
    KindSpec("apps", "DaemonSet", "daemonsets", _find_daemonset, True, "service"),
    KindSpec("apps", "ReplicaSet", "replicasets", _find_template, True, "service"),
    KindSpec("batch", "Job", "jobs", _find_job, False, "batch"),
    KindSpec("batch", "CronJob", "cronjobs", _find_cronjob, True, "batch"),
    *(KindSpec("kubeflow.org", kind, plural, _replica_specs(field_name), False, "training")
      for kind, (plural, field_name) in KUBEFLOW_JOBS.items()),
    KindSpec("trainer.kubeflow.org", "TrainingRuntime", "trainingruntimes",
             _find_training_runtime, True, "training"),
    KindSpec("trainer.kubeflow.org", "ClusterTrainingRuntime", "clustertrainingruntimes",
             _find_training_runtime, True, "training"),
    KindSpec("jobset.x-k8s.io", "JobSet", "jobsets", _find_jobset, False, "training"),
    KindSpec("leaderworkerset.x-k8s.io", "LeaderWorkerSet", "leaderworkersets", _find_lws, True,
             "inference"),
    KindSpec("ray.io", "RayCluster", "rayclusters", _find_raycluster, True, "training"),
    KindSpec("ray.io", "RayJob", "rayjobs", _find_rayjob, False, "training"),
    KindSpec("ray.io", "RayService", "rayservices", _find_rayservice, True, "inference"),
    KindSpec("serving.kserve.io", "InferenceService", "inferenceservices",
             _find_inferenceservice, True, "inference"),
    KindSpec("serving.kubeflow.org", "InferenceService", "inferenceservices",
             _find_inferenceservice, True, "inference"),
    KindSpec("batch.volcano.sh", "Job", "jobs", _find_volcano_job, False, "training"),
    KindSpec("argoproj.io", "Workflow", "workflows", _find_workflow, False, "batch"),
    KindSpec("argoproj.io", "WorkflowTemplate", "workflowtemplates", _find_workflow, True, "batch"),
    KindSpec("argoproj.io", "ClusterWorkflowTemplate", "clusterworkflowtemplates",
             _find_workflow, True, "batch"),
    KindSpec("argoproj.io", "CronWorkflow", "cronworkflows", _find_cronworkflow, True, "batch"),
    # Dynamic Resource Allocation: the devices pods claim (judged by dra-claims)
    KindSpec("resource.k8s.io", "ResourceClaim", "resourceclaims", _no_pods, pod_specs=False),
    KindSpec("resource.k8s.io", "ResourceClaimTemplate", "resourceclaimtemplates", _no_pods,
             pod_specs=False),
)

WORKLOAD_KINDS: tuple[KindSpec, ...] = tuple(spec for spec in KINDS if spec.pod_specs)
"""The kinds that hold pod specs: what policies about pods and workloads judge."""

_BY_GROUP_KIND = {(spec.group, spec.kind): spec for spec in KINDS}


def lookup(group: str, kind: str) -> KindSpec | None:
    """The table entry for (group, kind); None for kinds mlgate does not know."""
    return _BY_GROUP_KIND.get((group, kind))


def check_kind_name(value: str) -> str:
    """`Kind` or `group/Kind` of a kind in the table: any other name would silently match
    no request, so a typo is refused when the configuration loads."""
    group, slash, kind = value.rpartition("/")
    known_kind = any(spec.kind == kind for spec in KINDS)
    if known_kind and (not slash or any(spec.group == group for spec in KINDS)):
        return value  # an existing group and kind (`apps/Pod` is valid, and matches nothing)
    names = sorted({spec.kind for spec in KINDS} | {f"{s.group}/{s.kind}" for s in KINDS})
    close = difflib.get_close_matches(value, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else " (write Kind or group/Kind)"
    raise ValueError(f"{value!r} is not a kind mlgate supports{hint}")


KindName = Annotated[str, AfterValidator(check_kind_name)]
"""A kind of the table as the configuration names it: `Deployment` or `batch/Job`."""


def group_of(api_version: str) -> str:
    """`apps/v1` -> `apps`; `v1` -> `` (the core group)."""
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def view(obj: Any, group: str | None = None, kind: str | None = None,
         context: workloads.Context | None = None) -> workloads.Workload:
    """The `workloads.Workload` view of an object. Unknown kinds get a view without pods."""
    context = context or workloads.Context()
    if not isinstance(obj, dict):
        return workloads.Workload(obj={}, kind=kind or "", group=group or "", pods=[],
                                  kind_spec=None, context=context)
    if group is None:
        group = group_of(str(obj.get("apiVersion") or ""))
    if kind is None:
        kind = str(obj.get("kind") or "")
    spec = lookup(group, kind)
    pods = list(spec.find(obj)) if spec is not None else []
    return workloads.Workload(obj=obj, kind=kind, group=group, pods=pods, kind_spec=spec,
                              context=context)


def webhook_rules(mutating: bool = False) -> list[JSON]:
    """Admission webhook `rules` covering exactly the kinds in the table, one per group.

    `mutating`: only the kinds with pod specs. Every mutation mlgate makes is to a pod
    spec, so sending claims to `/mutate` would only add a call (and a way to fail) to
    each claim a controller creates for a pod.
    """
    by_group: dict[str, list[str]] = {}
    for spec in KINDS:
        if mutating and not spec.pod_specs:
            continue
        resources = by_group.setdefault(spec.group, [])
        if spec.resource not in resources:
            resources.append(spec.resource)
    return [
        {
            "apiGroups": [group],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": sorted(resources),
            "scope": "*",
        }
        for group, resources in by_group.items()
    ]

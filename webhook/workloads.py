"""Where pod specs live in every supported kind, and the views policies work on.

One table (`KINDS`) says, for each (API group, kind), how to find every pod spec inside
an object, with its JSON pointer, its role and how many pods it stands for. Policies see
a `Workload` with `PodSpecView`s and `ContainerView`s; they never walk raw objects, so
one policy works for a bare Pod and a four-role PyTorchJob alike. Views hold references
into the working copy: editing a view edits the object, and the engine diffs the result.

The webhook rules of the Helm chart and the cluster scan are generated from this table.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from webhook import schema

JSON = dict[str, Any]

CONTAINER: schema.ContainerType = "container"
INIT: schema.ContainerType = "init"
SIDECAR: schema.ContainerType = "sidecar"
EPHEMERAL: schema.ContainerType = "ephemeral"


def escape(token: str) -> str:
    """Escape one JSON pointer token (RFC 6901): `nvidia.com/gpu` -> `nvidia.com~1gpu`."""
    return token.replace("~", "~0").replace("/", "~1")


@functools.lru_cache(maxsize=256)
def glob_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """One compiled regular expression for a set of shell globs (case-sensitive)."""
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")
    return lambda name: regex.match(name) is not None


def pointer(*tokens: str | int) -> str:
    return "".join("/" + escape(str(t)) for t in tokens)


def _dict(value: Any) -> JSON | None:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(value: Any, default: int = 1) -> int:
    is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if is_count else default


@dataclass
class ContainerView:
    """One container of a pod spec, with the pointer of its dict in the object."""

    data: JSON
    pointer: str
    kind: schema.ContainerType  # container | init | sidecar | ephemeral

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def image(self) -> str | None:
        image = self.data.get("image")
        return image if isinstance(image, str) else None

    def _resources(self, section: str) -> JSON:
        resources = self.data.get("resources")
        if isinstance(resources, dict):
            found = resources.get(section)
            if isinstance(found, dict):
                return found
        return {}

    @property
    def requests(self) -> JSON:
        return self._resources("requests")

    @property
    def limits(self) -> JSON:
        return self._resources("limits")

    def resource_names(self) -> set[str]:
        return set(self.requests) | set(self.limits)

    def set_resource(self, section: str, resource: str, value: str) -> None:
        """Set `resources.<section>.<resource>`, creating the maps that are missing."""
        resources = self.data.get("resources")
        if not isinstance(resources, dict):
            resources = self.data["resources"] = {}
        target = resources.get(section)
        if not isinstance(target, dict):
            target = resources[section] = {}
        target[resource] = value

    def field_pointer(self, *tokens: str | int) -> str:
        return self.pointer + pointer(*tokens)


@dataclass
class PodSpecView:
    """One pod spec inside a workload.

    `spec` is the dict holding the pod-level fields (tolerations, nodeSelector, volumes,
    ...). For most kinds it is a core PodSpec; for KServe components and Argo templates it
    is the component or template, which inline the same fields.
    """

    spec: JSON
    pointer: str
    role: str
    replicas: int = 1
    containers: list[ContainerView] = field(default_factory=list)
    metadata_holder: JSON | None = None  # dict owning `metadata` (template) for labels
    labels_inline: bool = False  # KServe components carry `labels`/`annotations` inline

    # -- reading ---------------------------------------------------------------
    def resources_matching(self, patterns: list[str]) -> list[str]:
        """Resource names (sorted) requested or limited by any container that match a glob."""
        matches = glob_matcher(tuple(patterns))
        found: set[str] = set()
        for container in self.containers:
            found.update(name for name in container.resource_names() if matches(name))
        return sorted(found)

    def requests(self, pattern: str) -> bool:
        """True when any container requests or limits a resource matching `pattern`."""
        return bool(self.resources_matching([pattern]))

    @property
    def labels(self) -> JSON:
        meta = self._metadata(create=False)
        return _dict(meta.get("labels")) or {} if meta is not None else {}

    @property
    def annotations(self) -> JSON:
        meta = self._metadata(create=False)
        return _dict(meta.get("annotations")) or {} if meta is not None else {}

    # -- editing ---------------------------------------------------------------
    def _metadata(self, create: bool) -> JSON | None:
        if self.labels_inline:
            return self.spec
        if self.metadata_holder is None:
            return None
        meta = self.metadata_holder.get("metadata")
        if not isinstance(meta, dict):
            if not create:
                return None
            meta = self.metadata_holder["metadata"] = {}
        return meta

    def set_label(self, key: str, value: str) -> None:
        meta = self._metadata(create=True)
        if meta is None:
            return
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = meta["labels"] = {}
        labels[key] = value

    def list_field(self, name: str) -> list[Any]:
        """The pod-level list `name` (tolerations, volumes, ...), created when missing."""
        value = self.spec.get(name)
        if not isinstance(value, list):
            value = self.spec[name] = []
        return value

    def tolerates(self, key: str, effect: str = "NoSchedule") -> bool:
        for toleration in _list(self.spec.get("tolerations")):
            if not isinstance(toleration, dict):
                continue
            t_key = toleration.get("key") or ""
            t_effect = toleration.get("effect") or ""
            operator = toleration.get("operator") or "Equal"
            key_ok = t_key == key or (t_key == "" and operator == "Exists")
            if key_ok and t_effect in ("", effect) and operator == "Exists":
                return True
        return False

    def tolerate(self, key: str, operator: str = "Exists", effect: str = "NoSchedule") -> bool:
        """Add a toleration unless an equivalent one is present. True when added."""
        if self.tolerates(key, effect):
            return False
        self.list_field("tolerations").append({"key": key, "operator": operator, "effect": effect})
        return True


@dataclass(frozen=True)
class Context:
    """What a policy may know about the request besides the object."""

    operation: str = "CREATE"
    namespace: str = ""
    user: str = ""
    groups: tuple[str, ...] = ()
    dry_run: bool = False
    old_object: JSON | None = None
    request: JSON = field(default_factory=dict)  # the normalised request, for CEL rules


@dataclass
class Workload:
    """A whole object with every pod spec it holds, and the request it came in."""

    obj: JSON
    kind: str
    group: str
    pods: list[PodSpecView]
    spec: KindSpec | None
    context: Context = field(default_factory=Context)

    @property
    def metadata(self) -> JSON:
        return _dict(self.obj.get("metadata")) or {}

    @property
    def name(self) -> str:
        meta = self.metadata
        return str(meta.get("name") or meta.get("generateName") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or self.context.namespace or "")

    @property
    def labels(self) -> JSON:
        return _dict(self.metadata.get("labels")) or {}

    @property
    def annotations(self) -> JSON:
        return _dict(self.metadata.get("annotations")) or {}

    @property
    def total_pods(self) -> int:
        return sum(pod.replicas for pod in self.pods)

    def containers(self) -> Iterator[tuple[PodSpecView, ContainerView]]:
        for pod in self.pods:
            for container in pod.containers:
                yield pod, container


# --------------------------------------------------------------------------------------
# The kind table
# --------------------------------------------------------------------------------------

Finder = Callable[[JSON], Iterator[PodSpecView]]


@dataclass(frozen=True)
class KindSpec:
    """One supported kind: its group, kind, plural resource and how to find pod specs."""

    group: str
    kind: str
    resource: str
    find: Finder = field(repr=False)
    template_mutable: bool = False  # may an UPDATE change the pod template?
    workload_class: str = "other"  # training | inference | batch | service | other


def core_pod(spec: JSON, ptr: str, role: str, replicas: int = 1, holder: JSON | None = None,
             ) -> PodSpecView:
    """A view of a core PodSpec dict: containers, init containers (and sidecars), ephemeral."""
    pod = PodSpecView(spec=spec, pointer=ptr, role=role, replicas=replicas, metadata_holder=holder)
    for index, container in enumerate(_list(spec.get("containers"))):
        if isinstance(container, dict):
            pod.containers.append(ContainerView(container, f"{ptr}/containers/{index}", CONTAINER))
    for index, container in enumerate(_list(spec.get("initContainers"))):
        if isinstance(container, dict):
            kind = SIDECAR if container.get("restartPolicy") == "Always" else INIT
            pod.containers.append(ContainerView(container, f"{ptr}/initContainers/{index}", kind))
    for index, container in enumerate(_list(spec.get("ephemeralContainers"))):
        if isinstance(container, dict):
            pod.containers.append(
                ContainerView(container, f"{ptr}/ephemeralContainers/{index}", EPHEMERAL))
    return pod


def _template(template: Any, ptr: str, role: str, replicas: int = 1) -> Iterator[PodSpecView]:
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


def _find_pod(obj: JSON) -> Iterator[PodSpecView]:
    spec = _dict(obj.get("spec"))
    if spec is not None:
        yield core_pod(spec, "/spec", "pod", holder=obj)


def _find_template(obj: JSON) -> Iterator[PodSpecView]:
    yield from _template(_at(obj, "spec", "template"), "/spec/template", "template",
                         _count(_at(obj, "spec", "replicas")))


def _find_job(obj: JSON) -> Iterator[PodSpecView]:
    yield from _template(_at(obj, "spec", "template"), "/spec/template", "template",
                         _count(_at(obj, "spec", "parallelism")))


def _find_daemonset(obj: JSON) -> Iterator[PodSpecView]:
    yield from _template(_at(obj, "spec", "template"), "/spec/template", "template")


def _find_cronjob(obj: JSON) -> Iterator[PodSpecView]:
    yield from _template(_at(obj, "spec", "jobTemplate", "spec", "template"),
                         "/spec/jobTemplate/spec/template", "template",
                         _count(_at(obj, "spec", "jobTemplate", "spec", "parallelism")))


def _replica_specs(field_name: str) -> Finder:
    """Kubeflow training jobs: `spec.<x>ReplicaSpecs.<role>.template`."""

    def find(obj: JSON) -> Iterator[PodSpecView]:
        specs = _dict(_at(obj, "spec", field_name)) or {}
        for role, replica_spec in specs.items():
            replica_spec = _dict(replica_spec)
            if replica_spec is None:
                continue
            ptr = pointer("spec", field_name, role, "template")
            yield from _template(replica_spec.get("template"), ptr, role,
                                 _count(replica_spec.get("replicas")))

    return find


def _jobset_jobs(jobset_spec: Any, ptr: str) -> Iterator[PodSpecView]:
    for index, job in enumerate(_list(_at({"s": jobset_spec}, "s", "replicatedJobs"))):
        job = _dict(job)
        if job is None:
            continue
        role = str(job.get("name") or index)
        job_spec = _dict(_at(job, "template", "spec")) or {}
        replicas = _count(job.get("replicas")) * _count(job_spec.get("parallelism"))
        yield from _template(job_spec.get("template"),
                             f"{ptr}/replicatedJobs/{index}/template/spec/template", role, replicas)


def _find_jobset(obj: JSON) -> Iterator[PodSpecView]:
    yield from _jobset_jobs(obj.get("spec"), "/spec")


def _find_training_runtime(obj: JSON) -> Iterator[PodSpecView]:
    yield from _jobset_jobs(_at(obj, "spec", "template", "spec"), "/spec/template/spec")


def _find_lws(obj: JSON) -> Iterator[PodSpecView]:
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


def _ray_cluster(cluster_spec: Any, ptr: str) -> Iterator[PodSpecView]:
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


def _find_raycluster(obj: JSON) -> Iterator[PodSpecView]:
    yield from _ray_cluster(obj.get("spec"), "/spec")


def _find_rayjob(obj: JSON) -> Iterator[PodSpecView]:
    yield from _ray_cluster(_at(obj, "spec", "rayClusterSpec"), "/spec/rayClusterSpec")
    yield from _template(_at(obj, "spec", "submitterPodTemplate"), "/spec/submitterPodTemplate",
                         "submitter")


def _find_rayservice(obj: JSON) -> Iterator[PodSpecView]:
    yield from _ray_cluster(_at(obj, "spec", "rayClusterConfig"), "/spec/rayClusterConfig")


# KServe: every key of a component that is not a pod or component field is a framework
# (an inline container): sklearn, pytorch, model, ... (and alibi/art for explainers).
KSERVE_FRAMEWORKS = (
    "model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "pmml",
    "lightgbm", "paddle", "huggingface", "alibi", "art",
)


def _find_inferenceservice(obj: JSON) -> Iterator[PodSpecView]:
    for component in ("predictor", "transformer", "explainer"):
        spec = _dict(_at(obj, "spec", component))
        if spec is None:
            continue
        ptr = pointer("spec", component)
        replicas = max(_count(spec.get("minReplicas")), _count(spec.get("maxReplicas"), 0))
        pod = core_pod(spec, ptr, component, replicas)
        pod.labels_inline = True
        framework_containers = [
            ContainerView(value, f"{ptr}/{key}", CONTAINER)
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


def _find_volcano_job(obj: JSON) -> Iterator[PodSpecView]:
    for index, task in enumerate(_list(_at(obj, "spec", "tasks"))):
        task = _dict(task)
        if task is None:
            continue
        yield from _template(task.get("template"), f"/spec/tasks/{index}/template",
                             str(task.get("name") or index), _count(task.get("replicas")))


def _argo_templates(templates: Any, ptr: str) -> Iterator[PodSpecView]:
    """Argo templates that run a pod: `container`, `script` or `containerSet`."""
    for index, template in enumerate(_list(templates)):
        template = _dict(template)
        if template is None:
            continue
        tptr = f"{ptr}/{index}"
        pod = PodSpecView(spec=template, pointer=tptr, role=str(template.get("name") or index),
                          metadata_holder=template)
        for key in ("container", "script"):
            if isinstance(value := template.get(key), dict):
                pod.containers.append(ContainerView(value, f"{tptr}/{key}", CONTAINER))
        for cindex, container in enumerate(_list(_at(template, "containerSet", "containers"))):
            if isinstance(container, dict):
                pod.containers.append(
                    ContainerView(container, f"{tptr}/containerSet/containers/{cindex}", CONTAINER))
        if not pod.containers:
            continue  # steps, dag, resource, suspend: no pod of their own
        for cindex, container in enumerate(_list(template.get("initContainers"))):
            if isinstance(container, dict):
                pod.containers.append(
                    ContainerView(container, f"{tptr}/initContainers/{cindex}", INIT))
        for cindex, container in enumerate(_list(template.get("sidecars"))):
            if isinstance(container, dict):
                pod.containers.append(
                    ContainerView(container, f"{tptr}/sidecars/{cindex}", SIDECAR))
        yield pod


def _find_workflow(obj: JSON) -> Iterator[PodSpecView]:
    yield from _argo_templates(_at(obj, "spec", "templates"), "/spec/templates")


def _find_cronworkflow(obj: JSON) -> Iterator[PodSpecView]:
    yield from _argo_templates(_at(obj, "spec", "workflowSpec", "templates"),
                               "/spec/workflowSpec/templates")


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
)

_BY_GROUP_KIND = {(spec.group, spec.kind): spec for spec in KINDS}


def lookup(group: str, kind: str) -> KindSpec | None:
    """The table entry for (group, kind); None for kinds mlgate does not know."""
    return _BY_GROUP_KIND.get((group, kind))


def group_of(api_version: str) -> str:
    """`apps/v1` -> `apps`; `v1` -> `` (the core group)."""
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def view(obj: Any, group: str | None = None, kind: str | None = None,
         context: Context | None = None) -> Workload:
    """The `Workload` view of an object. Unknown kinds get a view without pods."""
    context = context or Context()
    if not isinstance(obj, dict):
        return Workload(obj={}, kind=kind or "", group=group or "", pods=[], spec=None,
                        context=context)
    if group is None:
        group = group_of(str(obj.get("apiVersion") or ""))
    if kind is None:
        kind = str(obj.get("kind") or "")
    spec = lookup(group, kind)
    pods = list(spec.find(obj)) if spec is not None else []
    return Workload(obj=obj, kind=kind, group=group, pods=pods, spec=spec, context=context)


def webhook_rules() -> list[JSON]:
    """Admission webhook `rules` covering exactly the kinds in the table, one per group."""
    by_group: dict[str, list[str]] = {}
    for spec in KINDS:
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

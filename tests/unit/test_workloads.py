"""The kind table: every supported kind hands out its pod specs with exact pointers.

Each fixture in tests/fixtures/workloads/ is a realistic manifest written from the
kind's documented field paths; the table below says, by hand, where its pod specs and
containers are, what role each pod spec plays and how many pods it stands for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from webhook import kind_table, workloads

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "workloads"

C, INIT, S, E = workloads.CONTAINER, workloads.INIT, workloads.SIDECAR, workloads.EPHEMERAL


@dataclass(frozen=True)
class Pod:
    """One expected pod spec: pointer, role, replicas, and (suffix, kind, name) containers."""

    pointer: str
    role: str
    replicas: int
    containers: tuple[tuple[str, str, str], ...]


def _one(pointer: str, role: str, replicas: int, *containers: tuple[str, str, str]) -> Pod:
    return Pod(pointer, role, replicas, containers)


EXPECTED: dict[str, tuple[str, str, list[Pod]]] = {
    "pod.yaml": ("", "Pod", [
        _one("/spec", "pod", 1,
             ("/containers/0", C, "trainer"), ("/containers/1", C, "tensorboard"),
             ("/initContainers/0", INIT, "fetch-data"), ("/initContainers/1", S, "log-shipper"),
             ("/ephemeralContainers/0", E, "debugger")),
    ]),
    "replicationcontroller.yaml": ("", "ReplicationController", [
        _one("/spec/template/spec", "template", 3, ("/containers/0", C, "server")),
    ]),
    "deployment.yaml": ("apps", "Deployment", [
        _one("/spec/template/spec", "template", 2,
             ("/containers/0", C, "vllm"), ("/containers/1", C, "metrics-proxy"),
             ("/initContainers/0", INIT, "download-weights")),
    ]),
    "statefulset.yaml": ("apps", "StatefulSet", [
        _one("/spec/template/spec", "template", 4, ("/containers/0", C, "ollama")),
    ]),
    "daemonset.yaml": ("apps", "DaemonSet", [
        _one("/spec/template/spec", "template", 1, ("/containers/0", C, "exporter")),
    ]),
    "replicaset.yaml": ("apps", "ReplicaSet", [
        _one("/spec/template/spec", "template", 5, ("/containers/0", C, "embedder")),
    ]),
    "job.yaml": ("batch", "Job", [
        _one("/spec/template/spec", "template", 3, ("/containers/0", C, "nbody")),
    ]),
    "cronjob.yaml": ("batch", "CronJob", [
        _one("/spec/jobTemplate/spec/template/spec", "template", 2,
             ("/containers/0", C, "eval"), ("/initContainers/0", INIT, "sync")),
    ]),
    "pytorchjob.yaml": ("kubeflow.org", "PyTorchJob", [
        _one("/spec/pytorchReplicaSpecs/Master/template/spec", "Master", 1,
             ("/containers/0", C, "pytorch")),
        _one("/spec/pytorchReplicaSpecs/Worker/template/spec", "Worker", 3,
             ("/containers/0", C, "pytorch"), ("/initContainers/0", INIT, "wait-for-master")),
    ]),
    "tfjob.yaml": ("kubeflow.org", "TFJob", [
        _one("/spec/tfReplicaSpecs/Chief/template/spec", "Chief", 1,
             ("/containers/0", C, "tensorflow")),
        _one("/spec/tfReplicaSpecs/PS/template/spec", "PS", 2, ("/containers/0", C, "tensorflow")),
        _one("/spec/tfReplicaSpecs/Worker/template/spec", "Worker", 4,
             ("/containers/0", C, "tensorflow")),
    ]),
    "mpijob-v1.yaml": ("kubeflow.org", "MPIJob", [
        _one("/spec/mpiReplicaSpecs/Launcher/template/spec", "Launcher", 1,
             ("/containers/0", C, "launcher")),
        _one("/spec/mpiReplicaSpecs/Worker/template/spec", "Worker", 2,
             ("/containers/0", C, "worker")),
    ]),
    "mpijob-v2beta1.yaml": ("kubeflow.org", "MPIJob", [
        _one("/spec/mpiReplicaSpecs/Launcher/template/spec", "Launcher", 1,
             ("/containers/0", C, "launcher")),
        _one("/spec/mpiReplicaSpecs/Worker/template/spec", "Worker", 4,
             ("/containers/0", C, "worker")),
    ]),
    "xgboostjob.yaml": ("kubeflow.org", "XGBoostJob", [
        _one("/spec/xgbReplicaSpecs/Master/template/spec", "Master", 1,
             ("/containers/0", C, "xgboost")),
        _one("/spec/xgbReplicaSpecs/Worker/template/spec", "Worker", 2,
             ("/containers/0", C, "xgboost")),
    ]),
    "paddlejob.yaml": ("kubeflow.org", "PaddleJob", [
        _one("/spec/paddleReplicaSpecs/Worker/template/spec", "Worker", 2,
             ("/containers/0", C, "paddle")),
    ]),
    "jaxjob.yaml": ("kubeflow.org", "JAXJob", [
        _one("/spec/jaxReplicaSpecs/Worker/template/spec", "Worker", 2,
             ("/containers/0", C, "jax")),
    ]),
    "mxjob.yaml": ("kubeflow.org", "MXJob", [
        _one("/spec/mxReplicaSpecs/Scheduler/template/spec", "Scheduler", 1,
             ("/containers/0", C, "mxnet")),
        _one("/spec/mxReplicaSpecs/Server/template/spec", "Server", 1,
             ("/containers/0", C, "mxnet")),
        _one("/spec/mxReplicaSpecs/Worker/template/spec", "Worker", 2,
             ("/containers/0", C, "mxnet")),
    ]),
    "trainingruntime.yaml": ("trainer.kubeflow.org", "TrainingRuntime", [
        _one("/spec/template/spec/replicatedJobs/0/template/spec/template/spec",
             "model-initializer", 1, ("/containers/0", C, "model-initializer")),
        _one("/spec/template/spec/replicatedJobs/1/template/spec/template/spec", "node", 2,
             ("/containers/0", C, "node")),
    ]),
    "clustertrainingruntime.yaml": ("trainer.kubeflow.org", "ClusterTrainingRuntime", [
        _one("/spec/template/spec/replicatedJobs/0/template/spec/template/spec", "launcher", 1,
             ("/containers/0", C, "node")),
        _one("/spec/template/spec/replicatedJobs/1/template/spec/template/spec", "node", 3,
             ("/containers/0", C, "node"), ("/initContainers/0", INIT, "ssh-keys")),
    ]),
    "jobset.yaml": ("jobset.x-k8s.io", "JobSet", [
        _one("/spec/replicatedJobs/0/template/spec/template/spec", "driver", 1,
             ("/containers/0", C, "driver")),
        # 2 Jobs x parallelism 4
        _one("/spec/replicatedJobs/1/template/spec/template/spec", "workers", 8,
             ("/containers/0", C, "trainer"), ("/initContainers/0", INIT, "topology-probe")),
    ]),
    "leaderworkerset.yaml": ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", [
        # 2 groups of size 4: one leader and three workers each
        _one("/spec/leaderWorkerTemplate/leaderTemplate/spec", "leader", 2,
             ("/containers/0", C, "vllm-leader")),
        _one("/spec/leaderWorkerTemplate/workerTemplate/spec", "worker", 6,
             ("/containers/0", C, "vllm-worker")),
    ]),
    "leaderworkerset-workers-only.yaml": ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", [
        _one("/spec/leaderWorkerTemplate/workerTemplate/spec", "worker", 6,
             ("/containers/0", C, "nginx")),
    ]),
    "raycluster.yaml": ("ray.io", "RayCluster", [
        _one("/spec/headGroupSpec/template/spec", "head", 1,
             ("/containers/0", C, "ray-head"), ("/containers/1", C, "fluentbit")),
        # autoscaling up to maxReplicas 5
        _one("/spec/workerGroupSpecs/0/template/spec", "gpu-group", 5,
             ("/containers/0", C, "ray-worker"), ("/initContainers/0", INIT, "wait-gcs-ready")),
        # 1 replica of a 4-host multi-host group
        _one("/spec/workerGroupSpecs/1/template/spec", "tpu-group", 4,
             ("/containers/0", C, "ray-worker")),
    ]),
    "rayjob.yaml": ("ray.io", "RayJob", [
        _one("/spec/rayClusterSpec/headGroupSpec/template/spec", "head", 1,
             ("/containers/0", C, "ray-head")),
        _one("/spec/rayClusterSpec/workerGroupSpecs/0/template/spec", "small-group", 2,
             ("/containers/0", C, "ray-worker")),
        _one("/spec/submitterPodTemplate/spec", "submitter", 1,
             ("/containers/0", C, "my-custom-rayjob-submitter")),
    ]),
    "rayservice.yaml": ("ray.io", "RayService", [
        _one("/spec/rayClusterConfig/headGroupSpec/template/spec", "head", 1,
             ("/containers/0", C, "ray-head")),
        _one("/spec/rayClusterConfig/workerGroupSpecs/0/template/spec", "gpu-group", 3,
             ("/containers/0", C, "ray-worker")),
    ]),
    "inferenceservice-kserve.yaml": ("serving.kserve.io", "InferenceService", [
        _one("/spec/predictor", "predictor", 4, ("/model", C, "")),
        _one("/spec/transformer", "transformer", 2, ("/containers/0", C, "kserve-container")),
        _one("/spec/explainer", "explainer", 1, ("/art", C, "")),
    ]),
    "inferenceservice-kubeflow.yaml": ("serving.kubeflow.org", "InferenceService", [
        _one("/spec/predictor", "predictor", 1, ("/pytorch", C, "")),
        _one("/spec/explainer", "explainer", 1, ("/alibi", C, "")),
    ]),
    "volcano-job.yaml": ("batch.volcano.sh", "Job", [
        _one("/spec/tasks/0/template/spec", "ps", 1, ("/containers/0", C, "tensorflow")),
        _one("/spec/tasks/1/template/spec", "worker", 2, ("/containers/0", C, "tensorflow")),
    ]),
    "workflow.yaml": ("argoproj.io", "Workflow", [
        # templates 0 (steps), 4 (resource) and 5 (dag) run no pod of their own
        _one("/spec/templates/1", "prepare", 1, ("/script", C, "")),
        _one("/spec/templates/2", "train", 1, ("/container", C, ""),
             ("/initContainers/0", INIT, "fetch"), ("/sidecars/0", S, "nvidia-smi-logger")),
        _one("/spec/templates/3", "report", 1, ("/containerSet/containers/0", C, "metrics"),
             ("/containerSet/containers/1", C, "publish")),
    ]),
    "workflowtemplate.yaml": ("argoproj.io", "WorkflowTemplate", [
        _one("/spec/templates/0", "infer", 1, ("/container", C, "")),
    ]),
    "clusterworkflowtemplate.yaml": ("argoproj.io", "ClusterWorkflowTemplate", [
        _one("/spec/templates/0", "smoke", 1, ("/script", C, "")),
    ]),
    "cronworkflow.yaml": ("argoproj.io", "CronWorkflow", [
        _one("/spec/workflowSpec/templates/0", "retrain", 1, ("/container", C, ""),
             ("/sidecars/0", S, "mlflow-proxy")),
    ]),
    # kinds without pod specs: the DRA claims pods name (judged by dra-claims)
    "resourceclaim.yaml": ("resource.k8s.io", "ResourceClaim", []),
    "resourceclaimtemplate.yaml": ("resource.k8s.io", "ResourceClaimTemplate", []),
}


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def resolve(obj: Any, ptr: str) -> Any:
    """The value at an RFC 6901 JSON pointer; KeyError/IndexError when it is not there."""
    if ptr == "":
        return obj
    assert ptr.startswith("/"), f"pointer {ptr!r} must start with /"
    value = obj
    for token in ptr[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list):
            assert token.isdigit(), f"{ptr}: {token!r} is not a list index"
            value = value[int(token)]
        else:
            value = value[token]
    return value


# -- the table against the fixtures ------------------------------------------------------
def test_every_kind_in_the_table_has_a_fixture() -> None:
    covered = {(group, kind) for group, kind, _ in EXPECTED.values()}
    table = {(spec.group, spec.kind) for spec in kind_table.KINDS}
    assert table - covered == set()
    assert covered - table == set()
    assert sorted(p.name for p in FIXTURES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_pods_containers_roles_and_replicas(name: str) -> None:
    group, kind, expected = EXPECTED[name]
    obj = load(name)
    workload = kind_table.view(obj)
    assert (workload.group, workload.kind) == (group, kind)
    assert workload.kind_spec is kind_table.lookup(group, kind)
    found = [
        Pod(pod.pointer, pod.role, pod.replicas,
            tuple((c.pointer.removeprefix(pod.pointer), c.container_type, c.name)
                  for c in pod.containers))
        for pod in workload.pods
    ]
    assert found == expected
    for pod in workload.pods:
        for container in pod.containers:
            assert container.pointer.startswith(pod.pointer + "/")
    assert workload.total_pods == sum(p.replicas for p in expected)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_pointer_resolves_to_the_viewed_dict(name: str) -> None:
    obj = load(name)
    workload = kind_table.view(obj)
    for pod in workload.pods:
        assert resolve(obj, pod.pointer) is pod.spec
        for container in pod.containers:
            assert resolve(obj, container.pointer) is container.data
            # KServe framework keys get their image from the serving runtime
            assert isinstance(container.image, str) or pod.labels_inline


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pod_metadata_lives_beside_the_pod_spec(name: str) -> None:
    """Templates own `metadata` next to `spec`; KServe and Argo keep it on the spec dict."""
    obj = load(name)
    for pod in kind_table.view(obj).pods:
        if pod.labels_inline:
            assert pod.metadata_holder is None
        elif pod.pointer.endswith("/spec"):
            assert pod.metadata_holder is resolve(obj, pod.pointer.removesuffix("/spec"))
        else:  # Argo templates carry the pod's metadata themselves
            assert pod.metadata_holder is pod.spec


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_editing_a_view_edits_the_object_at_its_pointer(name: str) -> None:
    obj = load(name)
    original = copy.deepcopy(obj)
    workload = kind_table.view(obj)
    for pod in workload.pods:
        pod.tolerate("example.com/accel")
        for container in pod.containers:
            container.set_resource("limits", "example.com/accel", "1")
    patch = jsonpatch.make_patch(original, obj)
    touched = {op["path"] for op in patch.patch}
    for pod in workload.pods:
        for container in pod.containers:
            assert resolve(obj, container.field_pointer("resources", "limits",
                                                        "example.com/accel")) == "1"
        assert {"key": "example.com/accel", "operator": "Exists", "effect": "NoSchedule"} in \
            resolve(obj, pod.pointer + "/tolerations")
    assert all(any(path.startswith(pod.pointer) for pod in workload.pods) for path in touched)


# -- kinds that are not in the table -----------------------------------------------------
@pytest.mark.parametrize("obj", [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
     "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}}},
    {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
     "spec": {"runtimeRef": {"name": "torch-distributed"}}},
    # known kind names in a group that does not own them
    {"apiVersion": "example.com/v1", "kind": "Job",
     "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}}},
    {"apiVersion": "v1", "kind": "Deployment",
     "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}}},
    {"apiVersion": "apps/v1", "kind": "pod", "spec": {"containers": [{"name": "x"}]}},
    {"kind": "Pod"},  # no apiVersion: group "" -> a Pod without spec
    {},
])
def test_unknown_kinds_and_objects_without_pod_specs_give_no_pods(obj: dict[str, Any]) -> None:
    workload = kind_table.view(obj)
    assert workload.pods == []
    assert workload.total_pods == 0


@pytest.mark.parametrize("obj", [None, [], "Pod", 3])
def test_non_objects_give_an_empty_view(obj: Any) -> None:
    workload = kind_table.view(obj)
    assert workload.pods == [] and workload.kind_spec is None and workload.obj == {}


def test_volcano_job_and_batch_job_are_told_apart_by_group() -> None:
    volcano, batch = load("volcano-job.yaml"), load("job.yaml")
    assert kind_table.lookup("batch.volcano.sh", "Job") is not kind_table.lookup("batch", "Job")
    assert [p.role for p in kind_table.view(volcano).pods] == ["ps", "worker"]
    # the same objects under the other group's name find nothing where that group looks
    assert kind_table.view(volcano, group="batch", kind="Job").pods == []
    assert kind_table.view(batch, group="batch.volcano.sh", kind="Job").pods == []


def test_explicit_group_and_kind_win_over_the_objects_own() -> None:
    """The engine passes request.kind: the object's apiVersion may be missing or stale."""
    obj = load("deployment.yaml")
    del obj["apiVersion"], obj["kind"]
    workload = kind_table.view(obj, group="apps", kind="Deployment")
    assert [p.pointer for p in workload.pods] == ["/spec/template/spec"]


def test_malformed_parts_are_skipped_not_fatal() -> None:
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {
        "Master": None, "Worker": {"replicas": "3", "template": {"spec": {"containers": [
            "not-a-dict", None, {"name": "ok", "image": "i"}], "initContainers": {"x": 1}}}},
        "Evaluator": {"replicas": -1, "template": "garbage"}}}}
    pods = kind_table.view(obj).pods
    assert [(p.role, p.replicas) for p in pods] == [("Worker", 1)]  # "3" is not an int
    assert [(c.pointer, c.name) for c in pods[0].containers] == [
        ("/spec/pytorchReplicaSpecs/Worker/template/spec/containers/2", "ok")]


# -- JSON pointers -----------------------------------------------------------------------
@pytest.mark.parametrize(("token", "escaped"), [
    ("nvidia.com/gpu", "nvidia.com~1gpu"),
    ("a~b", "a~0b"),
    ("~/", "~0~1"),
    ("~1", "~01"),  # a literal "~1" must not decode back to "/"
    ("plain", "plain"),
    ("", ""),
])
def test_escape_follows_rfc_6901(token: str, escaped: str) -> None:
    assert workloads.escape(token) == escaped
    assert resolve({token: "here"}, "/" + escaped) == "here"


def test_pointer_joins_escaped_tokens() -> None:
    assert workloads.pointer("spec", "a/b", 0, "x~y") == "/spec/a~1b/0/x~0y"
    assert workloads.pointer() == ""


def test_roles_with_slashes_and_tildes_are_escaped_in_pod_pointers() -> None:
    role = "Worker/gpu~a"
    template = {"spec": {"containers": [{"name": "t", "image": "i"}]}}
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {
        role: {"replicas": 2, "template": template}}}}
    (pod,) = kind_table.view(obj).pods
    assert pod.role == role
    assert pod.pointer == "/spec/pytorchReplicaSpecs/Worker~1gpu~0a/template/spec"
    assert resolve(obj, pod.pointer) is pod.spec
    container = pod.containers[0]
    ptr = container.field_pointer("resources", "limits", "nvidia.com/gpu")
    assert ptr.endswith("/containers/0/resources/limits/nvidia.com~1gpu")
    patched = jsonpatch.apply_patch(obj, [
        {"op": "add", "path": container.field_pointer("resources"), "value": {"limits": {}}},
        {"op": "add", "path": ptr, "value": "1"}])
    assert patched["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"][0][
        "resources"] == {"limits": {"nvidia.com/gpu": "1"}}


# -- view helpers ------------------------------------------------------------------------
def _pod(spec: dict[str, Any]) -> workloads.PodSpecView:
    return kind_table.view({"apiVersion": "v1", "kind": "Pod", "spec": spec}).pods[0]


@pytest.mark.parametrize(("tolerations", "key", "effect", "expected"), [
    ([], "nvidia.com/gpu", "NoSchedule", False),
    ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
     "nvidia.com/gpu", "NoSchedule", True),
    ([{"key": "nvidia.com/gpu", "operator": "Exists"}], "nvidia.com/gpu", "NoSchedule", True),
    ([{"operator": "Exists"}], "nvidia.com/gpu", "NoSchedule", True),  # tolerates everything
    ([{"key": "", "operator": "Exists", "effect": "NoExecute"}], "nvidia.com/gpu", "NoSchedule",
     False),
    ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}],
     "nvidia.com/gpu", "NoSchedule", False),
    # Equal with a value tolerates only that value's taint: not an Exists toleration
    ([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
     "nvidia.com/gpu", "NoSchedule", False),
    ([{"key": "nvidia.com/gpu", "effect": "NoSchedule"}], "nvidia.com/gpu", "NoSchedule", False),
    ([{"key": "amd.com/gpu", "operator": "Exists"}], "nvidia.com/gpu", "NoSchedule", False),
    (["junk", None, {"key": "nvidia.com/gpu", "operator": "Exists"}], "nvidia.com/gpu",
     "NoSchedule", True),
    (None, "nvidia.com/gpu", "NoSchedule", False),
])
def test_tolerates(tolerations: Any, key: str, effect: str, expected: bool) -> None:
    assert _pod({"containers": [], "tolerations": tolerations}).tolerates(key, effect) is expected


@pytest.mark.parametrize("tolerations", [None, "junk", [], [{"key": "other", "operator": "Exists",
                                                             "effect": "NoSchedule"}]])
def test_tolerate_adds_once(tolerations: Any) -> None:
    spec: dict[str, Any] = {"containers": []}
    if tolerations is not None:
        spec["tolerations"] = copy.deepcopy(tolerations)
    pod = _pod(spec)
    assert pod.tolerate("nvidia.com/gpu") is True
    assert pod.tolerate("nvidia.com/gpu") is False
    wanted = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert spec["tolerations"].count(wanted) == 1
    assert spec["tolerations"][-1] == wanted
    before = len(tolerations) if isinstance(tolerations, list) else 0
    assert len(spec["tolerations"]) == before + 1


@pytest.mark.parametrize("resources", [None, {}, "junk", {"limits": None},
                                       {"limits": {"cpu": "1"}, "requests": "junk"}])
def test_set_resource_creates_missing_maps_and_keeps_others(resources: Any) -> None:
    data: dict[str, Any] = {"name": "c", "image": "i"}
    if resources is not None:
        data["resources"] = copy.deepcopy(resources)
    container = _pod({"containers": [data]}).containers[0]
    container.set_resource("limits", "nvidia.com/gpu", "2")
    container.set_resource("requests", "memory", "1Gi")
    assert data["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert data["resources"]["requests"] == {"memory": "1Gi"}
    if isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        assert data["resources"]["limits"]["cpu"] == "1"
    assert container.limits["nvidia.com/gpu"] == "2"
    assert container.resource_names() >= {"nvidia.com/gpu", "memory"}


def test_container_reads_tolerate_odd_values() -> None:
    data = {"name": None, "image": 5, "resources": {"requests": ["x"], "limits": None}}
    container = _pod({"containers": [data]}).containers[0]
    assert (container.name, container.image) == ("", None)
    assert container.requests == {} and container.limits == {}


def test_resources_matching_globs_over_all_containers() -> None:
    mig = {"name": "a", "resources": {"limits": {"nvidia.com/mig-1g.5gb": 1}}}
    intel = {"name": "b", "resources": {"requests": {"gpu.intel.com/i915": 1, "cpu": "1"}}}
    pod = _pod({"containers": [mig], "initContainers": [intel]})
    assert pod.resources_matching(["nvidia.com/mig-*", "gpu.intel.com/*"]) == [
        "gpu.intel.com/i915", "nvidia.com/mig-1g.5gb"]
    assert pod.requests("gpu.intel.com/*") is True
    assert pod.requests("nvidia.com/gpu") is False


def test_set_label_on_a_template_creates_metadata() -> None:
    obj = load("job.yaml")  # its template has no metadata
    pod = kind_table.view(obj).pods[0]
    assert pod.labels == {} and pod.annotations == {}
    pod.set_label("mlgate.io/accelerator", "nvidia")
    assert obj["spec"]["template"]["metadata"] == {"labels": {"mlgate.io/accelerator": "nvidia"}}
    assert kind_table.view(obj).pods[0].labels == {"mlgate.io/accelerator": "nvidia"}


def test_set_label_on_a_pod_uses_the_objects_metadata() -> None:
    obj = load("pod.yaml")
    pod = kind_table.view(obj).pods[0]
    assert pod.labels == {"app": "bert-finetune"}
    pod.set_label("team", "nlp")
    assert obj["metadata"]["labels"] == {"app": "bert-finetune", "team": "nlp"}


def test_kserve_components_carry_labels_inline() -> None:
    obj = load("inferenceservice-kserve.yaml")
    predictor, transformer, _ = kind_table.view(obj).pods
    assert predictor.labels_inline and predictor.labels == {"team": "nlp"}
    predictor.set_label("mlgate.io/accelerator", "nvidia")
    transformer.set_label("team", "nlp")
    assert obj["spec"]["predictor"]["labels"] == {"team": "nlp", "mlgate.io/accelerator": "nvidia"}
    assert obj["spec"]["transformer"]["labels"] == {"team": "nlp"}
    assert "metadata" not in obj["spec"]["predictor"]
    assert predictor.tolerates("dedicated") is False  # Equal, not Exists
    assert predictor.requests("nvidia.com/gpu") and not transformer.requests("nvidia.com/gpu")


def test_argo_template_labels_are_template_metadata() -> None:
    obj = load("workflow.yaml")
    prepare, train, _ = kind_table.view(obj).pods
    assert train.labels == {"stage": "train"}
    prepare.set_label("stage", "prepare")
    assert obj["spec"]["templates"][1]["metadata"] == {"labels": {"stage": "prepare"}}


def test_workload_identity_and_containers() -> None:
    workload = kind_table.view(load("workflow.yaml"))
    assert workload.name == "train-eval-"  # generateName when there is no name
    assert workload.namespace == "ml"
    assert [c.container_type for _, c in workload.containers()] == [C, C, INIT, S, C, C]
    context = workloads.Context(namespace="from-request")
    assert kind_table.view({"apiVersion": "v1", "kind": "Pod"}, context=context).namespace == \
        "from-request"


def test_group_of() -> None:
    assert kind_table.group_of("v1") == ""
    assert kind_table.group_of("apps/v1") == "apps"
    assert kind_table.group_of("batch.volcano.sh/v1alpha1") == "batch.volcano.sh"
    assert kind_table.group_of("") == ""


# -- webhook rules -----------------------------------------------------------------------
def test_webhook_rules_cover_every_kind_exactly_once_per_group() -> None:
    rules = kind_table.webhook_rules()
    groups = [rule["apiGroups"] for rule in rules]
    assert all(len(g) == 1 for g in groups)
    assert len({g[0] for g in groups}) == len(rules), "a group appears in two rules"
    covered = []
    for rule in rules:
        assert len(rule["resources"]) == len(set(rule["resources"])), rule
        assert rule["operations"] == ["CREATE", "UPDATE"]
        assert rule["apiVersions"] == ["*"]
        covered += [(rule["apiGroups"][0], resource) for resource in rule["resources"]]
    assert sorted(covered) == sorted({(spec.group, spec.resource) for spec in kind_table.KINDS})
    by_group = {rule["apiGroups"][0]: rule["resources"] for rule in rules}
    assert by_group["batch"] == ["cronjobs", "jobs"]
    assert by_group["batch.volcano.sh"] == ["jobs"]
    assert by_group[""] == ["pods", "replicationcontrollers"]
    assert "inferenceservices" in by_group["serving.kubeflow.org"]
    assert by_group["resource.k8s.io"] == ["resourceclaims", "resourceclaimtemplates"]


def test_the_mutating_webhook_gets_only_the_kinds_with_pod_specs() -> None:
    rules = kind_table.webhook_rules(mutating=True)
    covered = {(rule["apiGroups"][0], resource) for rule in rules
               for resource in rule["resources"]}
    assert covered == {(spec.group, spec.resource) for spec in kind_table.WORKLOAD_KINDS}
    assert "resource.k8s.io" not in {rule["apiGroups"][0] for rule in rules}
    assert [r for r in kind_table.webhook_rules() if r["apiGroups"] != ["resource.k8s.io"]] \
        == rules


def test_kinds_without_pod_specs_are_in_the_table_but_not_workloads() -> None:
    without = [(spec.group, spec.kind) for spec in kind_table.KINDS if not spec.pod_specs]
    assert without == [("resource.k8s.io", "ResourceClaim"),
                       ("resource.k8s.io", "ResourceClaimTemplate")]
    assert not set(without) & {(s.group, s.kind) for s in kind_table.WORKLOAD_KINDS}
    assert kind_table.check_kind_name("ResourceClaimTemplate") == "ResourceClaimTemplate"
    assert kind_table.view(load("resourceclaim.yaml")).pods == []


def test_table_has_no_duplicate_group_kind_or_resource() -> None:
    keys = [(spec.group, spec.kind) for spec in kind_table.KINDS]
    resources = [(spec.group, spec.resource) for spec in kind_table.KINDS]
    assert len(keys) == len(set(keys))
    assert len(resources) == len(set(resources))


def test_kserve_multi_node_worker_spec_is_a_pod_of_its_own() -> None:
    gpu = {"limits": {"nvidia.com/gpu": "1"}}
    obj = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
           "metadata": {"name": "llama", "namespace": "ml"},
           "spec": {"predictor": {
               "model": {"modelFormat": {"name": "huggingface"}, "resources": gpu},
               "workerSpec": {"pipelineParallelSize": 3, "tensorParallelSize": 1,
                              "containers": [{"name": "worker-container", "resources": gpu}]}}}}
    view = kind_table.view(obj)
    assert [(p.pointer, p.role, p.replicas) for p in view.pods] == [
        ("/spec/predictor", "predictor", 1),
        ("/spec/predictor/workerSpec", "predictor-worker", 2)]
    worker = view.pods[1]
    assert [c.pointer for c in worker.containers] == ["/spec/predictor/workerSpec/containers/0"]
    worker.set_label("team", "nlp")  # a WorkerSpec has no labels of its own: nothing written
    assert "labels" not in obj["spec"]["predictor"]["workerSpec"]
    assert worker.tolerate("nvidia.com/gpu")
    assert obj["spec"]["predictor"]["workerSpec"]["tolerations"][0]["key"] == "nvidia.com/gpu"

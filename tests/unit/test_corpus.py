"""Real manifests from public projects (../shared/corpus) through the real engine.

Every document goes through mutate then validate as `mlgate check` does (`Engine.check`);
the AdmissionReviews under admissionreview/ go through `admission.parse` and
`Engine.evaluate` as the server does (bare AdmissionRequests, as Kubewarden keeps them,
are wrapped into an AdmissionReview first). The counts of pod specs and containers per
document below were read from the files by hand, not from the code under test.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from tests import factories
from webhook import admission, config, decisions, engine, kind_table
from webhook.cli import load_manifests

pytestmark = pytest.mark.corpus

# (kind, pod specs, containers incl. init/sidecar) for every document, in file order.
MANIFESTS: dict[str, list[tuple[str, int, int]]] = {
    "argo-workflow/init-container.yaml": [("Workflow", 1, 2)],
    "argo-workflow/pod-spec-patch-latest.yaml": [("Workflow", 1, 1)],
    # steps + a resource template that creates a Volcano Job from a string: no pod here
    "argo-workflow/volcano-step-job-resource-manifest.yaml": [("Workflow", 0, 0)],
    "clustertrainingruntime/deepspeed-distributed.yaml": [("ClusterTrainingRuntime", 2, 2)],
    "clustertrainingruntime/torch-distributed.yaml": [("ClusterTrainingRuntime", 1, 1)],
    "clustertrainingruntime/torchtune-llama3.2-1b.yaml": [("ClusterTrainingRuntime", 3, 3)],
    "cronjob/kueue-sample-cronjob.yaml": [("CronJob", 1, 1)],
    "daemonset/dcgm-exporter-multidoc.yaml": [("DaemonSet", 1, 1), ("Service", 0, 0)],
    "daemonset/gpu-feature-discovery.yaml": [("DaemonSet", 1, 1)],
    "deployment/gpu-operator-plugin-mps-test.yaml": [("Deployment", 1, 1)],
    "deployment/gpu-operator-plugin-test.yaml": [("Deployment", 1, 1)],
    "deployment/ollama-gpu-latest-multidoc.yaml": [
        ("Namespace", 0, 0), ("Deployment", 1, 1), ("Service", 0, 0)],
    "deployment/ollama-gpu-server-nodeselector-multidoc.yaml": [
        ("Deployment", 1, 1), ("Service", 0, 0)],
    "deployment/tgi-llama3-8b-gke.yaml": [("Deployment", 1, 1)],
    "deployment/vllm-gemma-2-2b-it-gke-multidoc.yaml": [("Deployment", 1, 1), ("Service", 0, 0)],
    # KServe framework keys (sklearn, pytorch, triton) are inline containers
    "inferenceservice/sklearn-irisv2-no-resources.yaml": [("InferenceService", 1, 1)],
    "inferenceservice/torchserve-bert-v2-gpu.yaml": [("InferenceService", 1, 1)],
    "inferenceservice/torchserve-gpu-trailing-whitespace.yaml": [("InferenceService", 1, 1)],
    "inferenceservice/triton-torch-transformer-latest.yaml": [("InferenceService", 2, 2)],
    "jaxjob/jaxjob-mnist.yaml": [("JAXJob", 1, 1)],
    "job/kueue-sample-job-suspended.yaml": [("Job", 1, 1)],
    "job/nvidia-device-plugin-e2e-nbody.yaml": [("Job", 1, 1)],
    "jobset/exclusive-placement-v1alpha2.yaml": [("JobSet", 1, 1)],
    "jobset/kueue-jobset-tas-required.yaml": [("JobSet", 1, 1)],
    "jobset/pytorch-resnet-cifar10.yaml": [("JobSet", 1, 1)],
    "kueue/hami-gpu-deployment-multidoc.yaml": [
        ("ResourceFlavor", 0, 0), ("ClusterQueue", 0, 0), ("Namespace", 0, 0),
        ("LocalQueue", 0, 0), ("Deployment", 1, 1)],
    "kueue/single-clusterqueue-setup-multidoc.yaml": [
        ("ResourceFlavor", 0, 0), ("ClusterQueue", 0, 0), ("LocalQueue", 0, 0)],
    "leaderworkerset/sglang-latest-multidoc.yaml": [("LeaderWorkerSet", 2, 2), ("Service", 0, 0)],
    "leaderworkerset/tensorrt-llm-placeholder-image.yaml": [("LeaderWorkerSet", 2, 2)],
    "leaderworkerset/vllm-gpu-multinode.yaml": [("LeaderWorkerSet", 2, 2)],
    "leaderworkerset/volume-claim-templates-multidoc.yaml": [
        ("LeaderWorkerSet", 2, 2), ("Service", 0, 0)],
    "mpijob/tensorflow-mnist.yaml": [("MPIJob", 2, 2)],
    "mpijob/v2beta1-nccl-tests-privileged.yaml": [("MPIJob", 2, 2)],
    "mpijob/v2beta1-tensorflow-benchmarks-gpu-latest.yaml": [("MPIJob", 2, 2)],
    "paddlejob/paddle-simple-gpu.yaml": [("PaddleJob", 1, 1)],
    "pod/dra-extended-resource-mig-1g-12gb-multidoc.yaml": [
        ("Namespace", 0, 0), ("DeviceClass", 0, 0), ("Pod", 1, 1)],
    "pod/dra-gpu-test-count-resourceclaim-multidoc.yaml": [
        ("Namespace", 0, 0), ("ResourceClaimTemplate", 0, 0), ("Pod", 1, 1)],
    "pod/gpu-operator-cuda-vector-add.yaml": [("Pod", 1, 1)],
    "pod/hami-gpumem-gpucores.yaml": [("Pod", 1, 1)],
    "pod/hami-gputype-annotation.yaml": [("Pod", 1, 1)],
    "pod/hami-metax-sgpu-non-nvidia.yaml": [("Pod", 1, 1)],
    "pod/hami-mig-3g-20gb.yaml": [("Pod", 1, 1)],
    "pod/kueue-sleep-pod-generatename.yaml": [("Pod", 1, 1)],
    "pytorchjob/elastic-example-imagenet.yaml": [("PyTorchJob", 1, 1)],
    "pytorchjob/kueue-pytorch-simple-requests-only.yaml": [("PyTorchJob", 2, 2)],
    "pytorchjob/pytorch-deepspeed-demo.yaml": [("PyTorchJob", 2, 2)],
    "pytorchjob/pytorch-dist-mnist-nccl.yaml": [("PyTorchJob", 2, 2)],
    "pytorchjob/torchrun-cpu.yaml": [("PyTorchJob", 2, 2)],
    "raycluster/fluentbit-sidecar-multidoc.yaml": [("RayCluster", 1, 2), ("ConfigMap", 0, 0)],
    "raycluster/kai-gpu-sharing-multidoc.yaml": [
        ("Queue", 0, 0), ("Queue", 0, 0), ("RayCluster", 2, 2)],
    "raycluster/ray-cluster-gpu-initcontainer.yaml": [("RayCluster", 2, 3)],
    "rayjob/pytorch-text-classifier-gpu.yaml": [("RayJob", 1, 1)],
    "rayjob/rayjob-sample-configmap-multidoc.yaml": [("RayJob", 2, 2), ("ConfigMap", 0, 0)],
    "rayservice/stable-diffusion.yaml": [("RayService", 2, 2)],
    "rayservice/vllm-llama-3-8b.yaml": [("RayService", 2, 2)],
    "statefulset/kueue-sleep-statefulset-digest.yaml": [("StatefulSet", 1, 1)],
    "statefulset/ollama-gpu-runtimeclass.yaml": [("StatefulSet", 1, 1)],
    "tfjob/dist-mnist-for-e2e-test.yaml": [("TFJob", 2, 2)],
    "tfjob/multi-worker-keras-gpu.yaml": [("TFJob", 1, 1)],
    # TrainJob is not in the table: its podTemplateOverrides are partial pod specs that the
    # trainer controller merges into the runtime's, which mlgate sees as a TrainingRuntime
    "trainjob/kueue-integration-multidoc.yaml": [("TrainJob", 0, 0)],
    "trainjob/podspec-overrides.yaml": [("TrainJob", 0, 0)],
    "volcano-job/lm-mpi-job.yaml": [("Job", 2, 2)],
    "volcano-job/mindspore-gpu-trailing-separator.yaml": [("Job", 2, 2)],
    "volcano-job/tensorflow-benchmark-gpu.yaml": [("Job", 2, 2)],
    "xgboostjob/xgboost-dist-iris-train.yaml": [("XGBoostJob", 2, 2)],
}

# (kind, pod specs, containers) of the object in each review.
REVIEWS: dict[str, tuple[str, int, int]] = {
    "admissionreview/chainguard-admissionreview-v1-pod-digest-image.json": ("Pod", 1, 1),
    "admissionreview/kubewarden-request-deployment-requests-no-memory-limit.json":
        ("Deployment", 1, 1),
    "admissionreview/kubewarden-request-deployment-unsigned-image.json": ("Deployment", 1, 1),
    "admissionreview/kubewarden-request-pod-exceeding-resource-range.json": ("Pod", 1, 2),
    "admissionreview/kubewarden-request-pod-init-container.json": ("Pod", 1, 2),
    "admissionreview/kubewarden-request-pod-signed-image.json": ("Pod", 1, 1),
}

FULL = factories.EVERY_DEFAULT_EDITING
CORE_GROUPS = ("", "apps", "batch")
K8S_VERSION = kubernetes_validate.utils.latest_version()  # offline OpenAPI schemas


@pytest.fixture(scope="module", params=["defaults", "full"])
def eng(request: pytest.FixtureRequest) -> engine.Engine:
    data = {} if request.param == "defaults" else copy.deepcopy(FULL)
    return engine.Engine.build(config.from_mapping(data, {}))


@pytest.fixture(scope="module")
def corpus(shared_dir: Path) -> Path:
    path = shared_dir / "corpus"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def _errors(decision: decisions.Decision) -> list[str]:
    found = [f.message for f in decision.findings if f.error]
    if "internal error" in decision.message:
        found.append(decision.message)
    return found


def _core_valid(obj: dict[str, Any]) -> bool:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError:
        return False
    return True


def test_every_corpus_file_is_listed(corpus: Path) -> None:
    files = {str(p.relative_to(corpus)) for p in corpus.rglob("*")
             if p.suffix in (".yaml", ".yml", ".json")}
    listed = set(MANIFESTS) | set(REVIEWS)
    assert files - listed == set(), "new corpus files: add their expected counts here"
    assert listed - files == set(), "listed files that the corpus no longer has"


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_pod_specs_and_containers_per_document(corpus: Path, name: str) -> None:
    documents = load_manifests(corpus / name)
    found = []
    for obj in documents:
        workload = kind_table.view(obj)
        found.append((str(obj.get("kind")), len(workload.pods),
                      sum(len(pod.containers) for pod in workload.pods)))
    assert found == MANIFESTS[name]


@pytest.mark.parametrize("name", sorted(MANIFESTS))
async def test_manifest_mutate_then_validate(corpus: Path, eng: engine.Engine, name: str) -> None:
    for obj in load_manifests(corpus / name):
        original = copy.deepcopy(obj)
        known = kind_table.lookup(kind_table.group_of(str(obj.get("apiVersion"))),
                                 str(obj.get("kind"))) is not None
        mutated, validated, result = await eng.check(obj)
        assert obj == original, "the engine must not edit the object it was given"
        assert _errors(mutated) == [] and _errors(validated) == []
        assert bool(mutated.skipped) is not known, mutated.skipped
        assert bool(validated.skipped) is not known, validated.skipped
        # the API server applies the patch to the object the review carried
        patched = jsonpatch.apply_patch(obj, mutated.patch)
        assert patched == result
        for pod in kind_table.view(patched).pods:  # accelerator pods tolerate their taints
            for resource in pod.resources_matching(["nvidia.com/gpu", "amd.com/gpu"]):
                assert pod.tolerates(resource), f"{pod.pointer} does not tolerate {resource}"
        again, _, second = await eng.check(patched)
        assert again.patch == [], f"second pass changed {again.patch}"
        assert second == patched
        if kind_table.group_of(str(obj.get("apiVersion"))) in CORE_GROUPS and known \
                and _core_valid(obj):
            kubernetes_validate.validate(patched, K8S_VERSION, strict=True)


def _review(corpus: Path, name: str) -> dict[str, Any]:
    document = json.loads((corpus / name).read_text(encoding="utf-8"))
    if "request" not in document:  # a bare AdmissionRequest (Kubewarden test data)
        document = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": document}
    return document


@pytest.mark.parametrize("name", sorted(REVIEWS))
async def test_admission_reviews_through_the_wire_models(corpus: Path, eng: engine.Engine,
                                                        name: str) -> None:
    review = _review(corpus, name)
    request = admission.parse(json.dumps(review).encode(), "application/json")
    assert request.uid == review["request"]["uid"]
    kind, pods, containers = REVIEWS[name]
    assert request.kind == kind
    workload = kind_table.view(request.object, request.group, request.kind)
    assert (len(workload.pods), sum(len(p.containers) for p in workload.pods)) == (pods,
                                                                                  containers)

    mutated = await eng.evaluate(request, engine.MUTATE)
    assert _errors(mutated) == [] and mutated.skipped == ""
    answer = admission.respond(request.api_version, request.uid, mutated.allowed,
                               message=mutated.message, patch=mutated.patch,
                               warnings=mutated.warnings,
                               audit_annotations=mutated.audit_annotations())
    assert answer["apiVersion"] == review["apiVersion"]
    assert answer["response"]["uid"] == request.uid
    patched = jsonpatch.apply_patch(review["request"]["object"], mutated.patch)

    second_review = copy.deepcopy(review)
    second_review["request"]["object"] = patched
    second = admission.parse(json.dumps(second_review).encode(), "application/json")
    again = await eng.evaluate(second, engine.MUTATE)
    assert again.patch == [], f"second pass changed {again.patch}"

    validated = await eng.evaluate(second, engine.VALIDATE)
    assert _errors(validated) == [] and validated.skipped == ""
    # Kubewarden's objects may leave out apiVersion/kind: the review's kind says them
    gvk = review["request"]["kind"]
    typed = {"apiVersion": "/".join(filter(None, (gvk["group"], gvk["version"]))),
             "kind": gvk["kind"]}
    if _core_valid({**typed, **review["request"]["object"]}):
        kubernetes_validate.validate({**typed, **patched}, K8S_VERSION, strict=True)


def test_yaml_documents_parse_as_the_cli_reads_them(corpus: Path) -> None:
    """The CLI loader and a plain multi-document read agree (empty documents dropped)."""
    for name in MANIFESTS:
        text = (corpus / name).read_text(encoding="utf-8")
        plain = [d for d in yaml.safe_load_all(text) if d is not None]
        assert load_manifests(corpus / name) == plain, name

"""require-probes: serving workloads need readiness probes; batch and training are exempt."""

from __future__ import annotations

import pytest

from policies.require_probes import RequireProbes
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

READY = {"httpGet": {"path": "/health", "port": 8080}}
SERVING = {"apps/Deployment", "apps/StatefulSet", "serving.kserve.io/InferenceService",
           "serving.kubeflow.org/InferenceService", "leaderworkerset.x-k8s.io/LeaderWorkerSet",
           "ray.io/RayService"}


def _spec(**probes: dict) -> dict:
    return f.pod_spec(f.container("server", **probes), f.container("proxy", readinessProbe=READY),
                      initContainers=[f.container("download")])


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_only_serving_kinds_are_checked(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), _spec(livenessProbe=READY))
    found = kinds.violations(RequireProbes, {}, obj)
    if kind_id not in SERVING:
        assert found == []
        return
    pods = kinds.view(obj).pods
    assert [v.container for v in found] == ["server"] * len(pods)
    assert found[0].what == "no readinessProbe on a serving container"
    assert found[0].path == pods[0].containers[0].pointer + "/readinessProbe"


@pytest.mark.parametrize("kind_id", sorted(SERVING))
def test_probed_serving_containers_pass(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), _spec(readinessProbe=READY))
    assert kinds.violations(RequireProbes, {}, obj) == []


def test_any_versus_all_and_exempt_containers() -> None:
    liveness_only = f.pod(_spec(livenessProbe=READY))
    any_probe = {"kinds": ["Pod"], "probes": ["readinessProbe", "livenessProbe", "startupProbe"],
                 "require": "any"}
    assert kinds.violations(RequireProbes, any_probe, liveness_only) == []
    both = {"kinds": ["Pod"], "probes": ["livenessProbe", "readinessProbe"]}
    found = kinds.violations(RequireProbes, both, liveness_only)
    assert [(v.container, v.what) for v in found] == [
        ("server", "no readinessProbe on a serving container"),
        ("proxy", "no livenessProbe on a serving container")]
    exempt = {**both, "exemptContainers": ["prox*"]}
    assert [v.container for v in kinds.violations(RequireProbes, exempt, liveness_only)] == [
        "server"]
    bare = f.pod(f.pod_spec(f.container()))
    assert [v.what for v in kinds.violations(RequireProbes, any_probe, bare)] == [
        "no readinessProbe / livenessProbe / startupProbe on a serving container"]


def test_kserve_framework_specs_get_probes_from_the_serving_runtime() -> None:
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "ml"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                             "storageUri": "gs://b/m"}},
                     "transformer": {"containers": [f.container("t")]}}}
    found = kinds.violations(RequireProbes, {}, isvc)
    assert [(v.container, v.path) for v in found] == [
        ("t", "/spec/transformer/containers/0/readinessProbe")]


def test_group_qualified_kinds_and_bad_params() -> None:
    obj = kinds.wrap(kinds.kind_spec("batch/Job"), _spec())
    assert len(kinds.violations(RequireProbes, {"kinds": ["batch/Job"]}, obj)) == 1
    with pytest.raises(errors.ConfigError, match=r"require-probes\.params\.probes"):
        kinds.check({"require-probes": {"params": {"probes": ["healthProbe"]}}}, f.pod())
    with pytest.raises(errors.ConfigError, match=r"require-probes\.params\.probes"):
        kinds.check({"require-probes": {"params": {"probes": []}}}, f.pod())


def test_through_the_engine() -> None:
    obj = kinds.wrap(kinds.kind_spec("apps/Deployment"), f.pod_spec(f.container("tgi")),
                     name="llm")
    _, validated, _ = kinds.check({"require-probes": {}}, obj)
    assert validated.message == (
        "[require-probes] Deployment ml/llm /spec/template/spec container \"tgi\": no "
        "readinessProbe on a serving container (add readinessProbe: {httpGet: {path: /health, "
        "port: 8080}} (or tcpSocket/exec) so traffic waits until the model is loaded)")


@pytest.mark.corpus
def test_corpus_serving_manifests(shared_dir) -> None:
    corpus = dict(kinds.corpus(shared_dir))
    for where, obj in corpus.items():
        found = kinds.violations(RequireProbes, {}, obj)
        workload = kinds.view(obj)
        if workload.kind not in ("Deployment", "StatefulSet", "InferenceService",
                                 "LeaderWorkerSet", "RayService"):
            assert found == [], where
        for v in found:
            assert "readinessProbe" in v.what, where
    # The vLLM LWS example probes its leader; its Ray workers take no traffic.
    assert kinds.violations(RequireProbes, {},
                            corpus["leaderworkerset/vllm-gpu-multinode.yaml#0"]) == []
    # The GKE TGI example serves without a readiness probe (and declares no port).
    found = kinds.violations(RequireProbes, {}, corpus["deployment/tgi-llama3-8b-gke.yaml#0"])
    assert [v.container for v in found] == ["tgi-container"]
    # Ray Serve runs a proxy on every node, so head and worker pods both take traffic.
    found = kinds.violations(RequireProbes, {}, corpus["rayservice/vllm-llama-3-8b.yaml#0"])
    assert [v.container for v in found] == ["ray-head", "llm"]


def test_ports_decide_which_container_serves_and_lws_workers_are_exempt() -> None:
    spec = f.pod_spec(f.container("server", ports=[{"containerPort": 8080}]),
                      f.container("log-shipper"))
    found = kinds.violations(RequireProbes, {"kinds": ["Pod"]}, f.pod(spec))
    assert [v.container for v in found] == ["server"]
    strict = {"kinds": ["Pod"], "servingContainers": "all"}
    assert [v.container for v in kinds.violations(RequireProbes, strict, f.pod(spec))] == [
        "server", "log-shipper"]
    lws = kinds.wrap(kinds.kind_spec("leaderworkerset.x-k8s.io/LeaderWorkerSet"),
                     f.pod_spec(f.container("worker")))
    lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"] = {
        "spec": f.pod_spec(f.container("leader"))}
    assert [v.container for v in kinds.violations(RequireProbes, {}, lws)] == ["leader"]

"""disallow-latest-tag: a version tag or a digest, in every container of every kind."""

from __future__ import annotations

import pytest

from policies.disallow_latest_tag import DisallowLatestTag
from tests import factories as f
from tests.fixtures.policies import kinds

DIGEST = "sha256:" + "ab" * 32


def _spec(main: str, init: str, sidecar: str) -> dict:
    return f.pod_spec(f.container("main", image=main), initContainers=[
        f.container("init", image=init),
        f.container("proxy", image=sidecar, restartPolicy="Always")])


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_every_container_of_every_kind_is_checked(kind_id: str) -> None:
    obj = kinds.wrap(kinds.kind_spec(kind_id), _spec("nginx", "busybox:latest", "envoy:v1.30"))
    found = kinds.violations(DisallowLatestTag, {}, obj)
    pods = kinds.view(obj).pods
    assert [v.container for v in found] == ["main", "init"] * len(pods)
    assert found[0].what == "image 'nginx' has no tag, so the runtime pulls :latest"
    assert found[0].fix == ("pin a version (docker.io/library/nginx:<version>) or a digest "
                            "(docker.io/library/nginx@sha256:<digest>)")
    assert found[1].what == "image 'busybox:latest' uses the tag 'latest', which moves"
    assert found[0].path.endswith("/image")


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_versions_and_digests_pass_on_every_kind(kind_id: str) -> None:
    spec = _spec(f"nginx@{DIGEST}", f"busybox:latest@{DIGEST}", "localhost:5000/envoy:1.30")
    assert kinds.violations(DisallowLatestTag, {}, kinds.wrap(kinds.kind_spec(kind_id), spec)) == []


def test_a_registry_port_is_not_a_tag() -> None:
    found = kinds.violations(DisallowLatestTag, {},
                             f.pod(f.pod_spec(f.container(image="localhost:5000/train"))))
    assert [v.what for v in found] == [
        "image 'localhost:5000/train' has no tag, so the runtime pulls :latest"]


def test_ephemeral_containers_and_configured_tags() -> None:
    spec = f.pod_spec(f.container(image="app:1.0"), ephemeralContainers=[
        {"name": "debug", "image": "netshoot:nightly", "targetContainerName": "main"}])
    params = {"disallowedTags": ["latest", "nightly*", "main"]}
    found = kinds.violations(DisallowLatestTag, params, f.pod(spec))
    assert [(v.container, v.path) for v in found] == [
        ("debug", "/spec/ephemeralContainers/0/image")]


def test_untagged_images_may_be_allowed_explicitly() -> None:
    obj = f.pod(f.pod_spec(f.container(image="nginx"), f.container("b", image="nginx:latest")))
    found = kinds.violations(DisallowLatestTag, {"requireTag": False}, obj)
    assert [v.container for v in found] == ["b"]


def test_invalid_references_are_reported() -> None:
    found = kinds.violations(DisallowLatestTag, {},
                             f.pod(f.pod_spec(f.container(image="nginx:bad tag"))))
    assert "invalid tag" in found[0].what


def test_through_the_engine() -> None:
    obj = kinds.wrap(kinds.kind_spec("leaderworkerset.x-k8s.io/LeaderWorkerSet"),
                     f.pod_spec(f.container("vllm", image="vllm/vllm-openai:latest")),
                     name="serve")
    _, validated, _ = kinds.check({"disallow-latest-tag": {}}, obj)
    assert validated.message == (
        "[disallow-latest-tag] LeaderWorkerSet ml/serve /spec/leaderWorkerTemplate/workerTemplate"
        "/spec container \"vllm\": image 'vllm/vllm-openai:latest' uses the tag 'latest', which "
        "moves (pin a version (docker.io/vllm/vllm-openai:<version>) or a digest "
        "(docker.io/vllm/vllm-openai@sha256:<digest>))")


@pytest.mark.corpus
def test_corpus_latest_and_untagged_images_are_found(shared_dir) -> None:
    corpus = dict(kinds.corpus(shared_dir))
    for where, obj in corpus.items():
        found = kinds.violations(DisallowLatestTag, {}, obj)
        expected = [c.name for _, c in kinds.view(obj).containers()
                    if c.image and "@" not in c.image
                    and (c.image.endswith(":latest") or ":" not in c.image.rsplit("/", 1)[-1]
                         or "<" in c.image)]
        assert [v.container for v in found] == expected, where
    # SOURCES.md marks these as using :latest or no tag; the digest-pinned one passes.
    for where in ("deployment/ollama-gpu-latest-multidoc.yaml#1", "jaxjob/jaxjob-mnist.yaml#0",
                  "jobset/exclusive-placement-v1alpha2.yaml#0"):
        assert kinds.violations(DisallowLatestTag, {}, corpus[where]), where
    assert not kinds.violations(DisallowLatestTag, {},
                                corpus["statefulset/kueue-sleep-statefulset-digest.yaml#0"])

"""allowed-registries: every image, as the runtime resolves it, comes from an allowed entry."""

from __future__ import annotations

import pytest

from policies.allowed_registries import AllowedRegistries
from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import errors

PARAMS = {"registries": ["registry.example.com", "docker.io/library/*", "ghcr.io/acme/*"],
          "namespaces": {"sandbox-*": ["docker.io/*"]}}


def _spec(main: str, init: str, sidecar: str) -> dict:
    return f.pod_spec(f.container("main", image=main), initContainers=[
        f.container("init", image=init),
        f.container("proxy", image=sidecar, restartPolicy="Always")])


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_allowed_images_pass_on_every_kind(kind_id: str) -> None:
    spec = _spec("registry.example.com/ml/train:1", "busybox:1.36", "ghcr.io/acme/proxy/x:2")
    assert kinds.violations(AllowedRegistries, PARAMS, kinds.wrap(
        kinds.kind_spec(kind_id), spec)) == []


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_every_container_list_is_checked_on_every_kind(kind_id: str) -> None:
    spec = _spec("quay.io/x/train:1", "acme/tool:1", "ghcr.io/other/proxy:2")
    obj = kinds.wrap(kinds.kind_spec(kind_id), spec)
    found = kinds.violations(AllowedRegistries, PARAMS, obj)
    pods = kinds.view(obj).pods
    assert [v.container for v in found] == ["main", "init", "proxy"] * len(pods)
    by_name = {v.container: v for v in found}
    assert by_name["init"].what == (
        "image 'acme/tool:1' resolves to docker.io/acme/tool, which is not from an allowed "
        "registry (allowed: registry.example.com, docker.io/library/*, ghcr.io/acme/*)")
    assert by_name["main"].path.endswith("/image")


def test_ephemeral_containers_are_checked() -> None:
    spec = f.pod_spec(f.container(), ephemeralContainers=[
        {"name": "debug", "image": "nicolaka/netshoot", "targetContainerName": "main"}])
    found = kinds.violations(AllowedRegistries, PARAMS, f.pod(spec))
    assert [(v.container, v.path) for v in found] == [
        ("debug", "/spec/ephemeralContainers/0/image")]


def test_host_less_images_cannot_pose_as_an_allowed_registry() -> None:
    # `registry.example.com` allows that host; `registryexample/x` is Docker Hub.
    for image in ("registryexample/x:1", "registry.example.com.evil.io/x:1", "nginx:1"):
        found = kinds.violations(AllowedRegistries, {"registries": ["registry.example.com"]},
                                 f.pod(f.pod_spec(f.container(image=image))))
        assert len(found) == 1, image


def test_namespace_entries_add_to_the_list() -> None:
    obj = f.pod(f.pod_spec(f.container(image="someone/tool:1")), namespace="sandbox-1")
    assert kinds.violations(AllowedRegistries, PARAMS, obj) == []
    obj["metadata"]["namespace"] = "prod"
    assert len(kinds.violations(AllowedRegistries, PARAMS, obj)) == 1


def test_an_invalid_reference_is_reported_not_crashed_on() -> None:
    found = kinds.violations(AllowedRegistries, PARAMS,
                             f.pod(f.pod_spec(f.container(image="<image>"))))
    assert "repository component '<image>'" in found[0].what
    assert "registry/repository:tag" in found[0].fix


def test_no_configured_registry_refuses_all_and_says_what_to_configure() -> None:
    _, validated, _ = kinds.check({"allowed-registries": {}}, f.pod(name="p"))
    assert not validated.allowed
    assert validated.message == (
        "[allowed-registries] Pod ml/p /spec container \"main\": image "
        "'registry.example.com/ml/train:1.0' is not from an allowed registry (allowed: none "
        "configured) (list the trusted registries in "
        "policies.allowed-registries.params.registries)")


def test_urls_are_config_errors() -> None:
    with pytest.raises(errors.ConfigError, match=r"allowed-registries.*'https://r.io'"):
        kinds.check({"allowed-registries": {"params": {"registries": ["https://r.io"]}}}, f.pod())


@pytest.mark.corpus
def test_corpus_images_resolve_and_docker_hub_needs_an_entry(shared_dir) -> None:
    hub_only = {"registries": ["docker.io"]}
    everything = {"registries": ["*"]}
    hub_images = other_images = 0
    for where, obj in kinds.corpus(shared_dir):
        invalid = [v for v in kinds.violations(AllowedRegistries, everything, obj)]
        # The only references no runtime could pull are placeholders (`<image>`,
        # `gcr.io/<your_project>/...`) left in examples for the reader to fill in.
        assert all("component '<" in v.what for v in invalid), where
        for v in kinds.violations(AllowedRegistries, hub_only, obj):
            if "component '<" not in v.what:
                other_images += 1
                assert "docker.io/" not in v.what.split("which")[0], (where, v.what)
        hub_images += sum(1 for _, c in kinds.view(obj).containers()
                          if c.image and "/" not in c.image.split(":")[0])
    assert hub_images > 5 and other_images > 5

"""References (docker.io rules), caches, credentials and auth challenges, without a registry."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from webhook import config, errors, images
from webhook.signatures import cache, registry, settings


@pytest.mark.parametrize(("image", "expected"), [
    ("nginx", ("docker.io", "library/nginx", "latest", None)),
    ("nginx:1.25", ("docker.io", "library/nginx", "1.25", None)),
    ("index.docker.io/library/nginx", ("docker.io", "library/nginx", "latest", None)),
    ("docker.io/pytorch/pytorch:2.3", ("docker.io", "pytorch/pytorch", "2.3", None)),
    ("localhost/ml/x", ("localhost", "ml/x", "latest", None)),
    ("127.0.0.1:5000/ml/train:v1", ("127.0.0.1:5000", "ml/train", "v1", None)),
    ("nvcr.io/nvidia/pytorch:24.01-py3", ("nvcr.io", "nvidia/pytorch", "24.01-py3", None)),
    ("ghcr.io/a/b@sha256:" + "a" * 64, ("ghcr.io", "a/b", None, "sha256:" + "a" * 64)),
    ("ghcr.io/a/b:1@sha256:" + "b" * 64, ("ghcr.io", "a/b", "1", "sha256:" + "b" * 64)),
])
def test_parse(image: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = images.parse(image)
    assert (ref.registry, ref.repository, ref.pull_tag, ref.digest) == expected


def test_docker_hub_api_host_and_signature_tags() -> None:
    ref = images.parse("nginx")
    assert ref.api_host == "registry-1.docker.io" and ref.name == "docker.io/library/nginx"
    assert registry.signature_tag("sha256:ab", ".sig") == "sha256-ab.sig"


@pytest.mark.parametrize(("image", "complaint"), [
    ("", "empty"), ("Nginx", "repository"), ("ghcr.io/a/b@sha256:xyz", "invalid digest"),
    ("a/b:-bad", "tag"), (" nginx", "whitespace"),
])
def test_invalid_references_say_what_is_wrong(image: str, complaint: str) -> None:
    with pytest.raises(images.InvalidReference, match=complaint):
        images.parse(image)


def test_ttl_cache_expires_and_evicts_least_recently_used() -> None:
    now = [0.0]
    store: cache.TTLCache[int] = cache.TTLCache(2, 10, clock=lambda: now[0])
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # a is now the most recent
    store.put("c", 3)
    assert store.get("b") is cache.MISSING and len(store) == 2
    now[0] = 10.5
    assert store.get("a") is cache.MISSING and store.get("c") is cache.MISSING
    store.put("d", 4, ttl=1)
    now[0] = 11.6
    assert store.get("d") is cache.MISSING


async def test_coalescer_shares_one_task_and_survives_an_impatient_caller() -> None:
    coalescer = cache.Coalescer()
    started = 0
    release = asyncio.Event()

    async def work() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "done"

    waiting = [asyncio.create_task(coalescer.run("k", work, 30)) for _ in range(5)]
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await coalescer.run("k", work, 0.01)  # gives up; the shared task goes on
    release.set()
    assert await asyncio.gather(*waiting) == ["done"] * 5
    assert started == 1 and coalescer.joined == 5 and len(coalescer) == 0


def test_credentials_from_dockerconfigjson_and_secret(tmp_path: Path) -> None:
    auths = {"auths": {"https://index.docker.io/v1/": {
        "auth": base64.b64encode(b"bob:pw").decode()},
        "ghcr.io": {"username": "u", "password": "p"}}}
    plain = tmp_path / "config.json"
    plain.write_text(json.dumps(auths))
    assert settings.load_credentials(str(plain)) == {"docker.io": ("bob", "pw"),
                                                     "ghcr.io": ("u", "p")}
    secret = tmp_path / "secret.yaml"
    secret.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret",
                                  "type": "kubernetes.io/dockerconfigjson", "data": {
                                      ".dockerconfigjson": base64.b64encode(
                                          json.dumps(auths).encode()).decode()}}))
    assert settings.load_credentials(str(secret))["docker.io"] == ("bob", "pw")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(errors.ConfigError, match="not a dockerconfigjson"):
        settings.load_credentials(str(bad))
    with pytest.raises(errors.ConfigError, match="cannot read"):
        settings.load_credentials(str(tmp_path / "missing.json"))


def test_registries_config_validates_with_key_paths() -> None:
    cfg = config.from_mapping({"registries": {"deadline": "800ms",
                                              "cache": {"digestTTL": "30s"}}})
    assert cfg.registries.deadline == 0.8 and cfg.registries.cache.digestTTL == 30
    with pytest.raises(errors.ConfigError, match=r"registries\.cache\.maxEntries"):
        config.from_mapping({"registries": {"cache": {"maxEntries": 0}}})
    with pytest.raises(errors.ConfigError, match=r"registries\.deadline"):
        config.from_mapping({"registries": {"deadline": "soon"}})


def test_parse_challenge() -> None:
    scheme, params = registry.parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/nginx:pull"}

"""Image references resolve as the container runtime resolves them."""

from __future__ import annotations

import pytest

from webhook import images

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(("text", "name", "tag", "digest"), [
    ("nginx", "docker.io/library/nginx", None, None),
    ("nginx:1.25", "docker.io/library/nginx", "1.25", None),
    ("docker.io/nginx", "docker.io/library/nginx", None, None),
    ("index.docker.io/library/nginx:1", "docker.io/library/nginx", "1", None),
    ("acme/tool:v2", "docker.io/acme/tool", "v2", None),
    ("ghcr.io/acme/tool", "ghcr.io/acme/tool", None, None),
    ("localhost/tool", "localhost/tool", None, None),
    ("localhost:5000/a/b:c", "localhost:5000/a/b", "c", None),
    ("127.0.0.1:5000/ml/train:1.0", "127.0.0.1:5000/ml/train", "1.0", None),
    ("Registry/tool", "Registry/tool", None, None),  # upper case: a host, as in distribution
    (f"nvcr.io/nvidia/pytorch@{DIGEST}", "nvcr.io/nvidia/pytorch", None, DIGEST),
    (f"nvcr.io/nvidia/pytorch:24.01-py3@{DIGEST}", "nvcr.io/nvidia/pytorch", "24.01-py3",
     DIGEST),
    ("a.b/c__d/e-f.g_h:T_1.x-2", "a.b/c__d/e-f.g_h", "T_1.x-2", None),
])
def test_references_resolve_like_the_runtime(text: str, name: str, tag: str | None,
                                             digest: str | None) -> None:
    ref = images.parse(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert ref.implicit_tag == (tag is None and digest is None)
    assert images.parse(str(ref)) == images.Reference(ref.registry, ref.repository, tag, digest,
                                                      str(ref))


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    (" nginx", "whitespace"),
    ("<image>", "repository component '<image>'"),
    ("Nginx", "repository component 'Nginx'"),
    ("nginx:", "invalid tag ''"),
    ("nginx:-1", "invalid tag '-1'"),
    ("nginx@sha256:abc", "invalid digest"),
    ("my_host:5000/x", "invalid registry host 'my_host:5000'"),
    ("ghcr.io/", "no repository"),
    ("a//b", "repository component ''"),
])
def test_invalid_references_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(images.InvalidReference, match=problem.replace("[", r"\[")):
        images.parse(text)

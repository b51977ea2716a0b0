"""Container image references, resolved the way the container runtime resolves them.

`nginx` is `docker.io/library/nginx:latest` to containerd and CRI-O, and `acme/tool` is
`docker.io/acme/tool`. A policy that compares `nginx` against an allowlist of registries
must compare what will actually be pulled, so every image-aware policy parses references
here. The grammar is the distribution reference grammar (`name[:tag][@digest]`, where
the first path component is a registry host only when it holds a `.` or a `:`, is
`localhost`, or has upper-case letters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
OFFICIAL_NAMESPACE = "library"
# Old spellings of Docker Hub that the runtime rewrites to docker.io.
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")
DOCKER_HUB_API = "registry-1.docker.io"  # the host that serves docker.io's distribution API
# A content digest as registries compute them (what a manifest reference is checked against).
DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")


class InvalidReference(ValueError):
    """The text is not an image reference the container runtime would accept."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; `registry` and `repository` are always filled in."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    original: str = ""

    @property
    def name(self) -> str:
        """`registry/repository`: what allowlists of registries and repositories match."""
        return f"{self.registry}/{self.repository}"

    @property
    def implicit_tag(self) -> bool:
        """True when the runtime would pull `:latest` because neither tag nor digest is set."""
        return self.tag is None and self.digest is None

    @property
    def pull_tag(self) -> str | None:
        """The tag the runtime pulls: the tag, `latest` when none is written, None by digest."""
        return "latest" if self.implicit_tag else self.tag

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host that serves the distribution API for `registry`."""
        return DOCKER_HUB_API if self.registry == DEFAULT_REGISTRY else self.registry

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest, self.original)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    is_host = bool(slash) and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first)
    if not is_host:
        return DEFAULT_REGISTRY, name
    return first, rest


def parse(text: str) -> Reference:
    """Parse and normalise `text`; raises InvalidReference naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference("the image is empty")
    if text != text.strip():
        raise InvalidReference(f"image {text!r} has leading or trailing whitespace")
    name, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        raise InvalidReference(
            f"image {text!r} has an invalid digest {digest!r} (expected sha256:<64 hex digits>)")
    registry, path = _split_registry(name)
    tag: str | None = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(f"image {text!r} has an invalid tag {tag!r}")
    if registry != DEFAULT_REGISTRY and not _DOMAIN.match(registry):
        raise InvalidReference(f"image {text!r} has an invalid registry host {registry!r}")
    if not path:
        raise InvalidReference(f"image {text!r} has no repository name")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise InvalidReference(
                f"image {text!r}: repository component {component!r} must be lower-case "
                f"letters, digits and single separators (. _ __ -)")
    if registry in DOCKER_HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    return Reference(registry=registry, repository=path, tag=tag,
                     digest=digest if at else None, original=text)

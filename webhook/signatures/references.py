"""Image references as Kubernetes writes them, parsed with the distribution rules.

`nginx` is `docker.io/library/nginx:latest`; the first path component is a registry only
when it has a `.` or a `:` or is `localhost`; `index.docker.io` is `docker.io`, whose API
lives at `registry-1.docker.io`. A digest, when present, is what the image is; a tag next
to it is only a label (the container runtime pulls by digest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


class InvalidReference(ValueError):
    """An image string that is not a valid reference; the message says which part."""


@dataclass(frozen=True)
class Reference:
    """`registry/repository[:tag][@digest]`, normalised (docker.io, library/)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host that serves the distribution API for `registry`."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """`registry/repository`, the repository a signature identity names."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(image: str) -> Reference:
    """Parse an image string; raise InvalidReference naming what is wrong."""
    if not isinstance(image, str) or not image.strip():
        raise InvalidReference("the image is empty")
    if image != image.strip():
        raise InvalidReference(f"image {image!r} has surrounding whitespace")
    rest, digest = image, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST.match(digest):
            raise InvalidReference(f"image {image!r}: {digest!r} is not a digest "
                                   f"(sha256: followed by 64 lowercase hex digits)")
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(f"image {image!r}: tag {tag!r} is not valid (letters, "
                                   f"digits, _ . -; at most 128; not starting with . or -)")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
        if not _DOMAIN.match(registry):
            raise InvalidReference(f"image {image!r}: {registry!r} is not a registry host")
    else:
        registry, path = DOCKER_HUB, rest
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH.match(path):
        raise InvalidReference(f"image {image!r}: repository {path!r} is not valid (lowercase "
                               f"letters, digits and separators . _ - between them)")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)


def signature_tag(digest: str, suffix: str = "") -> str:
    """`sha256:abc` -> `sha256-abc` (+ `.sig`): where cosign stores what refers to a digest."""
    algorithm, _, hex_digits = digest.partition(":")
    return f"{algorithm}-{hex_digits}{suffix}"


def same_repository(a: str, b: Reference) -> bool:
    """Whether the reference text `a` names the repository of `b` (docker.io aware)."""
    try:
        parsed = parse(a)
    except InvalidReference:
        return False
    return parsed.name == b.name

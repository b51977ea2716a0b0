"""Every image comes from a registry (or repository) the platform trusts.

A pod can run any image its author can name, and a typo-squatted or unvetted image from
Docker Hub runs with the pod's service account and the GPU node's drivers. The allowlist
is matched against the name the container runtime will actually pull: an image without a
registry host is `docker.io/...`, and a single-segment name is `docker.io/library/...`,
so `nginx` does not slip past a list that only names `registry.example.com`. Init,
sidecar and ephemeral containers are checked too, since each is an image that runs.

Entries are globs on `registry/repository`; an entry without `/` allows a whole registry
(`registry.example.com`). `*` crosses `/`, so `ghcr.io/acme/*` allows nested repositories.
With no entry at all every image is refused, with a message that says what to configure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

from pydantic import Field

from webhook import images, policy, schema, workloads


class Params(policy.Params):
    registries: list[str] = Field(
        default_factory=list,
        description="Allowed registries (registry.example.com) or registry/repository globs "
                    "(docker.io/library/*); images without a host count as docker.io.")
    namespaces: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Namespace glob -> more allowed entries there (first matching glob).")
    containerKinds: list[schema.ContainerType] = Field(
        default_factory=lambda: [workloads.CONTAINER, workloads.INIT, workloads.SIDECAR,
                                 workloads.EPHEMERAL],
        description="Container kinds checked (container, init, sidecar, ephemeral).")


def allows(entry: str, ref: images.Reference) -> bool:
    if "/" not in entry:
        return fnmatch.fnmatchcase(ref.registry, entry)
    return fnmatch.fnmatchcase(ref.name, entry)


class AllowedRegistries(policy.ValidatingPolicy[Params]):
    """Reject images whose resolved registry/repository matches no allowed entry."""

    name = "allowed-registries"
    blocking = False

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        for entry in [*params.registries, *(e for v in params.namespaces.values() for e in v)]:
            if not entry or entry != entry.strip() or "://" in entry:
                raise ValueError(f"registries: {entry!r} must be a registry host or a "
                                 f"registry/repository glob, without scheme or spaces")

    def validate(self, workload: workloads.Workload,
                 ) -> Iterator[policy.Violation]:
        allowed = list(self.params.registries) + (
            policy.for_namespace(self.params.namespaces, workload.namespace) or [])
        shown = ", ".join(allowed) if allowed else "none configured"
        for pod, container in workload.containers():
            checked = container.container_type in self.params.containerKinds
            if not checked or container.image is None:
                continue  # no image: KServe model specs get theirs from the ServingRuntime
            try:
                ref = images.parse(container.image)
            except images.InvalidReference as exc:
                yield policy.Violation.at_container(
                    pod, container, str(exc), "write the image as registry/repository:tag or "
                    "registry/repository@sha256:<digest>", "image")
                continue
            if any(allows(entry, ref) for entry in allowed):
                continue
            image = container.image
            written = image == ref.name or image.startswith((ref.name + ":", ref.name + "@"))
            resolved = "" if written else f" resolves to {ref.name}, which"
            fix = (f"use an image from an allowed registry ({shown})" if allowed else
                   "list the trusted registries in policies.allowed-registries.params.registries")
            yield policy.Violation.at_container(
                pod, container, f"image {image!r}{resolved} is not from an allowed "
                                f"registry (allowed: {shown})", fix, "image")

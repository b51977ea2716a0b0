"""Images carry a tag other than `latest`, or a digest.

`latest` (written, or implied by leaving the tag out) names whatever was pushed last:
two workers of one training job can run different code, a restarted inference pod can
pick up an untested build, and nobody can tell afterwards what ran. A digest pins the
exact image; with a digest the tag is informational and may be anything, because the
runtime pulls by digest. Every container kind is checked, since each runs an image.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

from pydantic import Field

from webhook import images, policy, schema, workloads


class Params(policy.Params):
    disallowedTags: list[str] = Field(
        default_factory=lambda: ["latest"],
        description="Tags (globs) refused unless the image also has a digest.")
    requireTag: bool = Field(
        True, description="Refuse images with neither tag nor digest (the runtime pulls "
                          ":latest).")
    containerKinds: list[schema.ContainerType] = Field(
        default_factory=lambda: [workloads.CONTAINER, workloads.INIT, workloads.SIDECAR,
                                 workloads.EPHEMERAL],
        description="Container kinds checked (container, init, sidecar, ephemeral).")


class DisallowLatestTag(policy.ValidatingPolicy[Params]):
    """Reject untagged images and images tagged `latest` that have no digest."""

    name = "disallow-latest-tag"
    blocking = False

    def validate(self, workload: workloads.Workload,
                 ) -> Iterator[policy.Violation]:
        for pod, container in workload.containers():
            checked = container.container_type in self.params.containerKinds
            if not checked or container.image is None:
                continue
            image = container.image
            try:
                ref = images.parse(image)
            except images.InvalidReference as exc:
                yield policy.Violation.at_container(
                    pod, container, str(exc), "write the image as repository:tag or "
                    "repository@sha256:<digest>", "image")
                continue
            if ref.digest is not None:
                continue
            fix = (f"pin a version ({ref.name}:<version>) or a digest "
                   f"({ref.name}@sha256:<digest>)")
            if ref.tag is None:
                if self.params.requireTag:
                    yield policy.Violation.at_container(
                        pod, container, f"image {image!r} has no tag, so the runtime pulls "
                                        f":latest", fix, "image")
            elif any(fnmatch.fnmatchcase(ref.tag, p) for p in self.params.disallowedTags):
                yield policy.Violation.at_container(
                    pod, container, f"image {image!r} uses the tag {ref.tag!r}, which moves",
                    fix, "image")

"""Pin image tags to the digest they name now: `repo:tag` -> `repo:tag@sha256:...`.

A tag can move between admission and the kubelet's pull; with the digest in the spec,
the image that was verified is the image that runs. Deployments and other objects that
GitOps tools reconcile are left alone by default (the tools would fight the rewrite
forever); pods and run-to-completion jobs are pinned. `oci://` model URIs of KServe
InferenceServices (webhook/models) are pinned the same way when that kind is listed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time

from pydantic import Field

from webhook import errors, images, kind_table, models, policy, schema, workloads
from webhook.signatures import verifier

DEFAULT_KINDS = ["Pod"] + sorted({spec.kind for spec in kind_table.KINDS
                                  if spec.pod_specs and not spec.template_mutable} - {"Pod"})


class Params(policy.Params):
    kinds: list[kind_table.KindName] = Field(default_factory=lambda: list(DEFAULT_KINDS),
                             description="kinds whose images are pinned (Kind or group/Kind)")
    images: list[str] = Field(default_factory=lambda: ["*"],
                              description="globs of images to pin")
    containerKinds: list[schema.ContainerType] = Field(default_factory=lambda: [
        workloads.CONTAINER, workloads.INIT, workloads.SIDECAR, workloads.EPHEMERAL])


class PinImageDigests(policy.MutatingPolicy[Params]):
    """Append the current digest to every tagged image of the configured kinds."""

    name = "pin-image-digests"
    edits_in_place = True

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        self.verifier = verifier.Verifier(self.env.registries)
        self.budget = self.env.registry_budget

    async def aclose(self) -> None:
        await self.verifier.aclose()

    async def mutate(self, workload: workloads.Workload) -> None:
        params = self.params
        if workload.kind not in params.kinds and \
                f"{workload.group}/{workload.kind}" not in params.kinds:
            return
        deadline = time.monotonic() + self.budget
        targets: list[tuple[workloads.ContainerView | models.Source, images.Reference]] = []
        for _, container in workload.containers():
            image = container.image
            checked = container.container_type in params.containerKinds
            if not checked or image is None or "@" in image:
                continue
            if not any(fnmatch.fnmatchcase(image, p) for p in params.images):
                continue
            try:
                targets.append((container, images.parse(image)))
            except images.InvalidReference as exc:
                raise errors.PolicyError(self.env.name, f"container {container.name!r}: {exc}"
                                         ) from exc
        for source in models.sources(workload):  # oci:// models (KServe modelcars)
            image = source.image
            if image is None or "@" in image or \
                    not any(fnmatch.fnmatchcase(image, p) for p in params.images):
                continue
            try:
                targets.append((source, images.parse(image)))
            except images.InvalidReference as exc:
                raise errors.PolicyError(
                    self.env.name, f"model {source.uri!r} at {source.pointer}: {exc}") from exc
        unique = {str(ref): ref for _, ref in targets}
        results = await asyncio.gather(*(self.verifier.resolve(ref, deadline)
                                         for ref in unique.values()), return_exceptions=True)
        digests = dict(zip(unique, results, strict=True))
        failed = [f"{image}: {result}" for image, result in digests.items()
                  if isinstance(result, BaseException)]
        if failed:
            raise errors.PolicyError(self.env.name, "cannot resolve " + "; ".join(failed))
        for target, ref in targets:
            if isinstance(target, models.Source):
                target.pin(f"{target.image}@{digests[str(ref)]}")
            else:
                target.data["image"] = f"{target.image}@{digests[str(ref)]}"

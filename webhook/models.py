"""Where ML workloads load model weights from: the storage URIs of KServe components.

An InferenceService names its model by URI, not by image: `storageUri` on the predictor's
framework key (`model`, `sklearn`, `huggingface`, ... and the explainer's `art`), and
`storageUris[].uri` on any component, in `spec` and in each `spec.canary[]`. The storage
initializer (or, for `oci://`, the modelcar sidecar) pulls it when the pod starts, so the
URI decides what code-adjacent bytes run next to the GPU: `oci://` models are OCI
artifacts that can be signed like images; `hf://` or an arbitrary `https://` URL pulls
unreviewed weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from webhook import kind_table, workloads

OCI = "oci://"
KSERVE_GROUPS = ("serving.kserve.io", "serving.kubeflow.org")
COMPONENTS = ("predictor", "transformer", "explainer")


@dataclass
class Source:
    """One model URI of a workload: the dict and key holding it, for reading and pinning."""

    holder: dict[str, Any]
    key: str
    pointer: str  # JSON pointer of the field
    role: str  # predictor, transformer, explainer (canary: canary/0/predictor)

    @property
    def uri(self) -> str:
        return str(self.holder[self.key])

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0] if "://" in self.uri else ""

    @property
    def image(self) -> str | None:
        """The image reference of an `oci://` URI (what a modelcar pulls), else None."""
        return self.uri[len(OCI):] if self.uri.startswith(OCI) else None

    def pin(self, image: str) -> None:
        """Rewrite an `oci://` URI to name `image` (e.g. with its digest appended)."""
        self.holder[self.key] = OCI + image


def _component(spec: Any, ptr: str, role: str) -> Iterator[Source]:
    if not isinstance(spec, dict):
        return
    for key in kind_table.KSERVE_FRAMEWORKS:
        framework = spec.get(key)
        if isinstance(framework, dict) and isinstance(framework.get("storageUri"), str):
            yield Source(framework, "storageUri",
                         workloads.pointer(*ptr.strip("/").split("/"), key, "storageUri"), role)
    uris = spec.get("storageUris")
    for index, item in enumerate(uris if isinstance(uris, list) else []):
        if isinstance(item, dict) and isinstance(item.get("uri"), str):
            yield Source(item, "uri", f"{ptr}/storageUris/{index}/uri", role)


def sources(workload: workloads.Workload) -> list[Source]:
    """Every model URI of the workload (none for kinds other than InferenceService)."""
    if workload.group not in KSERVE_GROUPS or workload.kind != "InferenceService":
        return []
    spec = workload.obj.get("spec")
    if not isinstance(spec, dict):
        return []
    found = [s for c in COMPONENTS for s in _component(spec.get(c), f"/spec/{c}", c)]
    canaries = spec.get("canary")
    for index, canary in enumerate(canaries if isinstance(canaries, list) else []):
        if isinstance(canary, dict):
            found += [s for c in COMPONENTS for s in _component(
                canary.get(c), f"/spec/canary/{index}/{c}", f"canary/{index}/{c}")]
    return found


def allowed(uri: str, schemes: list[str], prefixes: list[str]) -> bool:
    """Whether `uri` uses an allowed scheme or starts with an allowed prefix."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    return scheme in schemes or any(uri.startswith(prefix) for prefix in prefixes)

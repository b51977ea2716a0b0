"""Models come only from sources the platform trusts, per namespace.

An InferenceService loads its weights at start-up from its storage URIs (webhook/models):
`hf://` or an arbitrary `https://` URL pulls unreviewed weights next to the GPU, with the
pod's credentials. Per namespace glob (first match, in config order), a URI is allowed
when its scheme is listed (`s3`, `pvc`) or it starts with a listed prefix
(`oci://registry.example.com/models/`). A namespace no glob matches is not restricted;
add `"*"` last to restrict every namespace. `oci://` models can also be required to be
signed (image-signatures rules match them like images).

Example: in `prod-*` only the model registry and one bucket; elsewhere any OCI or S3 model.

```yaml
allowed-model-sources:
  params:
    namespaces:
      "prod-*": {prefixes: ["oci://registry.example.com/models/", "s3://ml-models/"]}
      "*": {schemes: [oci, s3, pvc]}
```
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from webhook import models, policy, workloads


class Sources(policy.Params):
    schemes: list[str] = Field(default_factory=list,
                               description="allowed URI schemes, without :// (s3, gs, pvc, oci)")
    prefixes: list[str] = Field(default_factory=list,
                                description="allowed URI prefixes (oci://registry/models/)")


class ModelSourcesParams(policy.Params):
    namespaces: dict[str, Sources] = Field(
        default_factory=dict, description="namespace glob -> allowed sources (first match); "
        "namespaces no glob matches are not restricted")


class AllowedModelSources(policy.ValidatingPolicy[ModelSourcesParams]):
    """Reject model storage URIs outside the namespace's allowed schemes and prefixes."""

    name = "allowed-model-sources"
    blocking = False

    def __init__(self, params: ModelSourcesParams, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        for glob, sources in params.namespaces.items():
            for scheme in sources.schemes:
                if not scheme or "://" in scheme or scheme != scheme.strip():
                    raise ValueError(f"namespaces[{glob!r}].schemes: {scheme!r} must be a bare "
                                     f"scheme such as s3 or oci (without ://)")
            for prefix in sources.prefixes:
                if "://" not in prefix:
                    raise ValueError(f"namespaces[{glob!r}].prefixes: {prefix!r} must be a URI "
                                     f"prefix such as oci://registry.example.com/models/")

    def validate(self, workload: workloads.Workload,
                 ) -> Iterator[policy.Violation]:
        sources = policy.for_namespace(self.params.namespaces, workload.namespace)
        if sources is None:
            return
        shown = ", ".join([*(f"{s}://" for s in sources.schemes), *sources.prefixes]) or "none"
        for source in models.sources(workload):
            if models.allowed(source.uri, sources.schemes, sources.prefixes):
                continue
            yield policy.Violation(
                what=f"the model {source.uri!r} at {source.pointer} is not from a source "
                     f"allowed in namespace {workload.namespace!r} (allowed: {shown})",
                fix="publish the model to an allowed source and point the storage URI at "
                    "it, or have the platform team allow this source",
                path=source.pointer)

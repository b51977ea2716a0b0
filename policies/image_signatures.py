"""Reject images that are not signed by the rule's keys or keyless identities.

An image matched by a rule must carry at least one valid signature from that rule's
authorities: a cosign legacy `.sig` signature (key-based, or keyless: a Fulcio certificate
and a Rekor SET), or a sigstore bundle (keyless or key-based) attached as an OCI referrer.
A rule may also require attestations (SLSA provenance, a vulnerability scan, an SBOM)
signed by the same authorities and meeting CEL conditions (webhook/signatures/attestations).
Key-based signatures' Rekor entries are checked per the rule's `tlog`; `oci://` model URIs
of InferenceServices are verified like images.
Keyless signatures of both kinds are trusted through `registries.trustedRoot` (default: the
production Sigstore root sigstore-python ships). The image is resolved to its digest; what
the digest names is what was signed (for a multi-arch image, the index). A registry that is
down or slow gives the rule's failure mode within the request's deadline.

Example: images of the ML registry signed by our CI (keyless), built by our builder, and
scanned within 7 days with nothing HIGH or CRITICAL:

```yaml
rules:
  - name: ml-images
    images: ["registry.example.com/ml/*"]
    keyless: [{issuer: "https://token.actions.githubusercontent.com",
               subjectRegExp: "^https://github.com/acme/"}]
    attestations:
      - name: provenance
        predicateType: slsaprovenance1
        conditions: ['predicate.runDetails.builder.id.startsWith("https://github.com/acme/")']
      - name: scan
        predicateType: vuln
        conditions:
          - timestamp(predicate.metadata.scanFinishedOn) > now - duration("168h")
          - '!predicate.scanner.result.Results.exists(r, has(r.Vulnerabilities) &&
             r.Vulnerabilities.exists(v, v.Severity in ["HIGH", "CRITICAL"]))'
```
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from webhook import images, models, policy, schema, workloads
from webhook.signatures import attestations, bundles, keys, verifier

ALL_CONTAINER_KINDS = [workloads.CONTAINER, workloads.INIT, workloads.SIDECAR,
                       workloads.EPHEMERAL]


class Key(policy.Params):
    path: str | None = Field(None, description="PEM public key file (cosign.pub)")
    pem: str | None = Field(None, description="PEM public key inline")

    @model_validator(mode="after")
    def _one(self) -> Key:
        if (self.path is None) == (self.pem is None):
            raise ValueError("give exactly one of path or pem")
        return self


class Keyless(policy.Params):
    issuer: str | None = None
    issuerRegExp: str | None = None
    subject: str | None = None
    subjectRegExp: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Keyless:
        if (self.issuer is None) == (self.issuerRegExp is None):
            raise ValueError("give exactly one of issuer or issuerRegExp")
        if (self.subject is None) == (self.subjectRegExp is None):
            raise ValueError("give exactly one of subject or subjectRegExp")
        for name in ("issuerRegExp", "subjectRegExp"):
            value = getattr(self, name)
            if value is not None:
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"{name} {value!r} is not a regular expression: {exc}"
                                     ) from exc
        return self


class Attestation(policy.Params):
    name: str = Field(description="named in messages")
    predicateType: str | list[str] = Field(
        description="in-toto predicate type (or several: any of them), or a cosign --type "
        "name: slsaprovenance1, vuln, spdx, cyclonedx, ...")
    conditions: list[str] = Field(
        default_factory=list, description="CEL over `predicate`, `statement` and `now`; all "
        "must be true for one attestation of the type")


class Rule(policy.Params):
    name: str = Field(description="named in every message")
    images: list[str] = Field(min_length=1, description="globs, e.g. registry.example.com/ml/*")
    keys: list[Key] = []
    keyless: list[Keyless] = Field(
        default_factory=list, description="Fulcio identities: legacy `.sig` and bundles")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="required in the signed payload's `optional`")
    checkIdentity: bool = Field(
        True, description="the payload's docker-reference must name the image's repository")
    failure: Literal["deny", "allow"] = Field(
        "deny", description="what a registry that is down, slow or refusing does")
    attestations: list[Attestation] = Field(
        default_factory=list, description="in-toto attestations the image must also carry, "
        "signed by the same authorities (legacy `.att` or bundle referrers)")
    tlog: Literal["required", "optional", "off"] = Field(
        "optional", description="Rekor entry of key-based signatures: required (a verified "
        "SET, inclusion proof or RFC 3161 timestamp), optional (checked when present) or "
        "off; keyless ones always need theirs")

    @model_validator(mode="after")
    def _authority(self) -> Rule:
        if not self.keys and not self.keyless:
            raise ValueError(f"rule {self.name!r} has no keys and no keyless identities; "
                             f"give at least one authority")
        return self


class Params(policy.Params):
    rules: list[Rule] = Field(default_factory=list)
    unmatched: Literal["allow", "warn", "deny"] = Field(
        "allow", description="images no rule matches: allow, warn (admission warning) or deny")
    containerKinds: list[schema.ContainerType] = Field(
        default_factory=lambda: list(ALL_CONTAINER_KINDS))


def _load_key(key: Key, rule: str, index: int) -> tuple[str, keys.PublicKey]:
    where = f"rules[{rule}].keys[{index}]"
    if key.path is not None:
        try:
            data = Path(key.path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{where}: cannot read {key.path}: {exc.strerror}") from exc
        return Path(key.path).name, keys.load(data, f"{where} ({key.path})")
    assert key.pem is not None
    return f"key {index + 1} of {rule}", keys.load(key.pem, where)


def matches(patterns: list[str], image: str) -> bool:
    """A glob matches the image as written or its normalised repository."""
    names = [image, image.split("@")[0]]
    try:
        ref = images.parse(image)
        names += [ref.name, f"{ref.name}:{ref.pull_tag}" if ref.pull_tag else ref.name]
    except images.InvalidReference:
        pass
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


class ImageSignatures(policy.ValidatingPolicy[Params]):
    """Images matched by a rule must be signed by one of the rule's authorities."""

    name = "image-signatures"

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        self._authorities: dict[str, verifier.Authorities] = {}
        for rule in params.rules:
            loaded = [_load_key(key, rule.name, i) for i, key in enumerate(rule.keys)]
            identities = [bundles.Identity(k.issuer, k.subject, k.issuerRegExp, k.subjectRegExp)
                          for k in rule.keyless]
            requirements = [attestations.Requirement.build(
                a.name, a.predicateType, a.conditions, f"rules[{rule.name}].attestations[{i}]")
                for i, a in enumerate(rule.attestations)]
            self._authorities[rule.name] = verifier.Authorities.build(
                rule.name, loaded, identities, rule.annotations, rule.checkIdentity, rule.tlog,
                requirements)
        self.verifier = verifier.Verifier(self.env.registries)
        self.budget = self.env.registry_budget

    async def aclose(self) -> None:
        await self.verifier.aclose()

    async def validate(self, workload: workloads.Workload) -> AsyncIterator[policy.Violation]:
        params = self.params
        deadline = time.monotonic() + self.budget
        checks: dict[tuple[str, str], Any] = {}
        found: list[tuple[workloads.PodSpecView, workloads.ContainerView, str, Rule | None]] = []
        for pod, container in workload.containers():
            if container.container_type not in params.containerKinds:
                continue
            image = container.image
            if image is None:
                continue
            rule = next((r for r in params.rules if matches(r.images, image)), None)
            found.append((pod, container, image, rule))
            if rule is not None and (image, rule.name) not in checks:
                checks[(image, rule.name)] = self.verifier.check(
                    image, self._authorities[rule.name], deadline)
        sources = []  # oci:// models (KServe modelcars) are verified like images
        for source in models.sources(workload):
            image = source.image
            if image is None:
                continue
            rule = next((r for r in params.rules if matches(r.images, image)), None)
            sources.append((source, image, rule))
            if rule is not None and (image, rule.name) not in checks:
                checks[(image, rule.name)] = self.verifier.check(
                    image, self._authorities[rule.name], deadline)
        verdicts = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
        for source, image, rule in sources:
            if rule is None:
                continue  # allowed-model-sources decides where models may come from
            problem = verifier.explain(verdicts[(image, rule.name)],
                                       f"the model {source.uri} at {source.pointer}", rule.name,
                                       rule.failure)
            if problem is not None:
                yield policy.Violation(what=problem[0], fix=problem[1], path=source.pointer)
        for pod, container, image, rule in found:
            if rule is None:
                if params.unmatched != "allow":
                    yield policy.Violation.at_container(
                        pod, container, f"image {image} matches no image-signatures rule",
                        "use an image a rule covers, or add a rule for it", "image",
                        mode="warn" if params.unmatched == "warn" else None)
                continue
            problem = verifier.explain(verdicts[(image, rule.name)], f"image {image}",
                                       rule.name, rule.failure)
            if problem is not None:
                yield policy.Violation.at_container(pod, container, *problem, "image")

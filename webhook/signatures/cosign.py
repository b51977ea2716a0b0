"""cosign's legacy signatures: a "simple signing" payload and its signature.

cosign (and skopeo / containers-image, in the same format) stores them in an OCI manifest
at the tag `sha256-<hex>.sig`; every layer of type `application/vnd.dev.cosign.
simplesigning.v1+json` is one payload whose layer annotation
`dev.cosignproject.cosign/signature` is the base64 signature over the exact payload bytes.
A payload says which image it signs in `critical.image.docker-manifest-digest`;
`critical.identity.docker-reference` names the repository (cosign) or the tagged reference
(skopeo), and `optional` carries annotations (skopeo adds creator and timestamp).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook import images
from webhook.signatures import keys

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
PAYLOAD_TYPES = {"cosign container image signature", "atomic container signature"}
SIGSTORE_JSON_PREFIX = b"\x00sigstore-json\n"


@dataclass(frozen=True)
class Signature:
    """One legacy signature: exact payload bytes, base64 signature, layer annotations."""

    payload: bytes
    signature: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    where: str = ""  # for messages: `sha256-<hex>.sig layer 0`


@dataclass(frozen=True)
class Result:
    """The verdict on one signature; `reason` says why it is not valid."""

    valid: bool
    reason: str = ""
    signer: str = ""


def parse_sigstore_json(data: bytes, where: str = "") -> Signature:
    """A containers-image `signature-N` file: NUL, `sigstore-json\\n`, then one JSON object."""
    if not data.startswith(SIGSTORE_JSON_PREFIX):
        raise ValueError(f"{where}: not a sigstore-json signature (missing the "
                         f"\\x00sigstore-json header)")
    try:
        obj = json.loads(data[len(SIGSTORE_JSON_PREFIX):])
        payload = base64.b64decode(obj["payload"], validate=True)
        annotations = dict(obj.get("annotations") or {})
        mime = obj.get("mimeType")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"{where}: malformed sigstore-json signature: {exc}") from exc
    if mime != SIMPLESIGNING:
        raise ValueError(f"{where}: mimeType {mime!r} is not {SIMPLESIGNING}")
    return Signature(payload, str(annotations.get(SIGNATURE_ANNOTATION, "")),
                     annotations, where)


def _identity_matches(claimed: Any, image: images.Reference) -> bool:
    """containers-image's matchRepoDigestOrExact: a repository-only identity matches the
    repository; a tagged (or digested) identity must be exactly the image's reference."""
    if not isinstance(claimed, str):
        return False
    try:
        parsed = images.parse(claimed)
    except images.InvalidReference:
        return False
    if parsed.name != image.name:
        return False
    explicit_tag = ":" in claimed.rsplit("/", 1)[-1].split("@")[0]
    if parsed.digest:
        return parsed.digest == image.digest
    if explicit_tag:
        return parsed.pull_tag == image.pull_tag
    return True


def verify(signature: Signature, digest: str, public_keys: Sequence[tuple[str, keys.PublicKey]],
           annotations: Mapping[str, str] | None = None,
           identity: images.Reference | None = None) -> Result:
    """Check one legacy signature for the image `digest` against named public keys.

    Valid when the signature verifies with one key over the exact payload bytes, the
    payload names `digest`, carries every required annotation in `optional` and, when
    `identity` is given, names that image (repository, or exact tagged reference).
    """
    if not signature.signature:
        return Result(False, f"no {SIGNATURE_ANNOTATION} annotation")
    try:
        raw = base64.b64decode(signature.signature, validate=True)
    except binascii.Error:
        return Result(False, f"{SIGNATURE_ANNOTATION} is not base64")
    signer = next((name for name, key in public_keys
                   if keys.verifies(key, raw, signature.payload)), None)
    if signer is None:
        names = ", ".join(name for name, _ in public_keys) or "none configured"
        keyless = (" (it is a keyless signature: a Fulcio certificate, for a rule's keyless "
                   "identities)" if signature.annotations.get(CERTIFICATE_ANNOTATION) else "")
        return Result(False, f"the signature does not verify with the rule's keys "
                             f"({names}){keyless}")
    why = check_payload(signature.payload, digest, annotations, identity)
    return Result(not why, why, signer)


def check_payload(payload_bytes: bytes, digest: str, annotations: Mapping[str, str] | None = None,
                  identity: images.Reference | None = None) -> str:
    """Why a (verified) simple-signing payload does not sign the image `digest` ("" when it
    does): its type, its manifest digest, the required `optional` annotations and, when
    `identity` is given, its docker-reference. Key-based and keyless signatures share it."""
    try:
        payload = json.loads(payload_bytes)
        critical = payload["critical"]
        claimed_digest = critical["image"]["docker-manifest-digest"]
        payload_type = critical.get("type")
    except (ValueError, KeyError, TypeError):
        return ("the payload is not a simple-signing document "
                "(critical.image.docker-manifest-digest missing)")
    if payload_type not in PAYLOAD_TYPES:
        return f"the payload type is {payload_type!r}, not a container image signature"
    if claimed_digest != digest:
        return f"the payload signs {claimed_digest}, not this image's {digest}"
    optional = payload.get("optional") if isinstance(payload.get("optional"), dict) else {}
    for key, value in (annotations or {}).items():
        if optional.get(key) != value:
            return f"annotation {key}={value!r} required, the payload has {optional.get(key)!r}"
    if identity is not None:
        claimed = (critical.get("identity") or {}).get("docker-reference")
        if not _identity_matches(claimed, identity):
            return f"the payload names {claimed!r}, not {identity}"
    return ""

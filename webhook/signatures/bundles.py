"""Sigstore bundles (v0.3, cosign v3's default) that sign an image.

cosign v3 attaches a bundle as an OCI referrer of the image (artifactType
`application/vnd.dev.sigstore.bundle.v0.3+json`). A signature bundle holds a DSSE
envelope with an in-toto statement whose subject is the image digest and whose
predicateType is `https://sigstore.dev/cosign/sign/v1`; any other predicate is an
attestation, which says something about the image but does not sign it.

Keyless bundles (a Fulcio certificate) are verified by sigstore-python against a trusted
root read from a file, so verification works offline: the production root embedded in
sigstore-python, or the `trusted_root.json` of a private Sigstore. Key-based bundles are
verified with `cryptography` over the DSSE pre-authentication encoding (PAE).
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib.resources
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from webhook.signatures import keys
from webhook.signatures.cosign import Result

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
INTOTO = "application/vnd.in-toto+json"
_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_SAN_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


@dataclass(frozen=True)
class Identity:
    """A keyless signer: OIDC issuer and certificate subject (SAN), exact or regexp."""

    issuer: str | None = None
    subject: str | None = None
    issuer_regexp: str | None = None
    subject_regexp: str | None = None

    def matches(self, issuer: str | None, sans: Sequence[str]) -> bool:
        if self.issuer is not None and issuer != self.issuer:
            return False
        if self.issuer_regexp is not None and not (
                issuer is not None and re.search(self.issuer_regexp, issuer)):
            return False
        if self.subject is not None and self.subject not in sans:
            return False
        return self.subject_regexp is None or any(
            re.search(self.subject_regexp, san) for san in sans)

    def __str__(self) -> str:
        subject = self.subject or (f"/{self.subject_regexp}/" if self.subject_regexp
                                   else "any subject")
        issuer = self.issuer or (f"/{self.issuer_regexp}/" if self.issuer_regexp
                                 else "any issuer")
        return f"{subject} from {issuer}"


def _der_utf8(data: bytes) -> str:
    """The text of a DER UTF8String (tag 0x0c), as in Fulcio's v2 extensions."""
    if len(data) < 2 or data[0] != 0x0C:
        return data.decode(errors="replace")
    length, offset = data[1], 2
    if length & 0x80:
        size = length & 0x7F
        length, offset = int.from_bytes(data[2:2 + size], "big"), 2 + size
    return data[offset:offset + length].decode(errors="replace")


def certificate_identity(cert: x509.Certificate) -> tuple[str | None, list[str]]:
    """(OIDC issuer, SAN values) of a Fulcio certificate."""
    issuer = None
    for oid, decode in ((_ISSUER_V2, _der_utf8), (_ISSUER_V1, bytes.decode)):
        try:
            ext = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        issuer = decode(ext.value)  # type: ignore[attr-defined]
        break
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return issuer, sans
    sans += san.get_values_for_type(x509.RFC822Name)
    sans += san.get_values_for_type(x509.UniformResourceIdentifier)
    sans += [_der_utf8(o.value) for o in san.get_values_for_type(x509.OtherName)
             if o.type_id == _SAN_OTHERNAME]
    return issuer, sans


def trusted_root_file(path: str | None = None) -> str:
    """The trusted_root.json to use: `path`, or the production root sigstore-python ships.
    Bundles (sigstore-python) and legacy keyless signatures (fulcio) read the same file."""
    if path is None:
        store = importlib.resources.files("sigstore") / "_store"
        return str(store / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json")
    if not Path(path).is_file():
        raise ValueError(f"trusted root {path} does not exist")
    return path


@functools.lru_cache(maxsize=8)
def trusted_root(path: str | None = None) -> Any:
    """A sigstore TrustedRoot from a file; default: the production root sigstore-python
    ships (no network: a TUF refresh is never attempted)."""
    from sigstore.models import TrustedRoot

    return TrustedRoot.from_file(trusted_root_file(path))


def _policy(identities: Sequence[Identity]) -> Any:
    from sigstore.errors import VerificationError
    from sigstore.verify.policy import VerificationPolicy

    class AnyIdentity(VerificationPolicy):
        def verify(self, cert: x509.Certificate) -> None:
            issuer, sans = certificate_identity(cert)
            if not any(identity.matches(issuer, sans) for identity in identities):
                raise VerificationError(
                    f"the certificate is for {', '.join(sans) or 'no subject'} from "
                    f"{issuer or 'no issuer'}, not {' or '.join(map(str, identities))}")

    return AnyIdentity()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _check_statement(payload_type: str, payload: bytes, digest: str,
                     predicate_types: frozenset[str] | None) -> str:
    """Why the DSSE payload does not sign `digest` ("" when it does)."""
    if payload_type != INTOTO:
        return f"the DSSE payload type is {payload_type!r}, not {INTOTO}"
    try:
        statement = json.loads(payload)
        subjects = statement.get("subject") or []
        predicate_type = statement.get("predicateType")
    except (ValueError, AttributeError):
        return "the DSSE payload is not an in-toto statement"
    algorithm, _, hex_digest = digest.partition(":")
    names = []
    for subject in subjects if isinstance(subjects, list) else []:
        if isinstance(subject, dict) and isinstance(subject.get("digest"), dict):
            if subject["digest"].get(algorithm) == hex_digest:
                break
            names.append(f"{algorithm}:{subject['digest'].get(algorithm)}")
    else:
        return f"the statement's subject is {', '.join(names) or 'empty'}, not {digest}"
    if predicate_types is not None and predicate_type not in predicate_types:
        return (f"predicateType {predicate_type!r} is an attestation, not a signature "
                f"({', '.join(sorted(predicate_types))})")
    return ""


def verify(bundle: bytes, digest: str,
           public_keys: Sequence[tuple[str, keys.PublicKey]] = (),
           identities: Sequence[Identity] = (), trusted_root_path: str | None = None,
           predicate_types: frozenset[str] | None = frozenset({COSIGN_SIGN_PREDICATE}),
           ) -> Result:
    """Whether a bundle validly signs `digest` for one of the keys or keyless identities.

    `predicate_types=None` accepts any in-toto predicate (generic artifact checks).
    """
    try:
        data = json.loads(bundle)
        media_type = str(data.get("mediaType", ""))
        material = data["verificationMaterial"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return Result(False, "not a sigstore bundle (no verificationMaterial)")
    if not media_type.startswith(BUNDLE_PREFIX):
        return Result(False, f"mediaType {media_type!r} is not a sigstore bundle")
    keyless = "certificate" in material or "x509CertificateChain" in material
    if keyless:
        return _verify_keyless(bundle, data, digest, identities, trusted_root_path,
                               predicate_types)
    if "publicKey" not in material:
        return Result(False, "the bundle has neither a certificate nor a public key hint")
    return _verify_key(data, digest, public_keys, predicate_types)


def _verify_key(data: dict[str, Any], digest: str,
                public_keys: Sequence[tuple[str, keys.PublicKey]],
                predicate_types: frozenset[str] | None) -> Result:
    if not public_keys:
        return Result(False, "the bundle is signed with a key, and the rule has no keys")
    names = ", ".join(name for name, _ in public_keys)
    try:
        if "dsseEnvelope" in data:
            envelope = data["dsseEnvelope"]
            payload = base64.b64decode(envelope["payload"], validate=True)
            payload_type = str(envelope["payloadType"])
            signatures = [base64.b64decode(s["sig"], validate=True)
                          for s in envelope["signatures"]]
            message = pae(payload_type, payload)
            signer = next((name for name, key in public_keys for sig in signatures
                           if keys.verifies(key, sig, message)), None)
            if signer is None:
                return Result(False, f"the DSSE signature does not verify with the rule's "
                                     f"keys ({names})")
            why = _check_statement(payload_type, payload, digest, predicate_types)
            return Result(not why, why, signer)
        signed = data["messageSignature"]
        claimed = base64.b64decode(signed["messageDigest"]["digest"], validate=True)
        signature = base64.b64decode(signed["signature"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        return Result(False, f"malformed bundle content: {type(exc).__name__}: {exc}")
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or claimed.hex() != hex_digest:
        return Result(False, f"the message signature is for sha256:{claimed.hex()}, not {digest}")
    if predicate_types is not None:
        return Result(False, "a message signature signs a blob; an image signature is a DSSE "
                             "statement")
    signer = next((name for name, key in public_keys
                   if keys.verifies_digest(key, signature, claimed)), None)
    if signer is None:
        return Result(False, f"the signature does not verify with the rule's keys ({names})")
    return Result(True, "", signer)


def _verify_keyless(bundle: bytes, data: dict[str, Any], digest: str,
                    identities: Sequence[Identity], trusted_root_path: str | None,
                    predicate_types: frozenset[str] | None) -> Result:
    if not identities:
        return Result(False, "the bundle is keyless (certificate), and the rule has no "
                             "keyless identities")
    from sigstore import hashes as sigstore_hashes
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify.verifier import Verifier
    from sigstore_models.common.v1 import HashAlgorithm

    try:
        parsed = Bundle.from_json(bundle)
        verifier = Verifier(trusted_root=trusted_root(trusted_root_path))
        if "dsseEnvelope" in data:
            payload_type, payload = verifier.verify_dsse(parsed, _policy(identities))
            why = _check_statement(payload_type, payload, digest, predicate_types)
        else:
            algorithm, _, hex_digest = digest.partition(":")
            if predicate_types is not None:
                return Result(False, "a message signature signs a blob; an image signature "
                                     "is a DSSE statement")
            hashed = sigstore_hashes.Hashed(algorithm=HashAlgorithm.SHA2_256,
                                            digest=bytes.fromhex(hex_digest))
            verifier.verify_artifact(hashed, parsed, _policy(identities))
            why = ""
    except (SigstoreError, ValueError, KeyError, TypeError) as exc:
        return Result(False, f"keyless verification failed: {exc}")
    issuer, sans = certificate_identity(parsed.signing_certificate)
    return Result(not why, why, f"{', '.join(sans)} ({issuer})")

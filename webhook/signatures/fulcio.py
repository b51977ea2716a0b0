"""Legacy keyless cosign signatures: a simple-signing payload signed under a Fulcio certificate.

Before bundles, `cosign sign` without a key stored on the `.sig` layer, next to the
signature: `dev.sigstore.cosign/certificate` (the short-lived Fulcio leaf, PEM),
`dev.sigstore.cosign/chain` (its intermediates and root, PEM) and `dev.sigstore.cosign/bundle`
(Rekor's signed entry timestamp, the SET). The leaf lives ten minutes, so the signature is
trusted because Rekor vouches that it was logged while the leaf was valid: the SET, signed by
a trusted Rekor key, carries the entry's integratedTime, and the certificate path is checked
at that time, not now. Trust comes from a `TrustRoot`: the Fulcio CAs and Rekor keys of a
sigstore trusted_root.json (the production one sigstore-python ships, by default) or PEM files.
The certificate's embedded SCT is checked against the trust root's CT logs (`sct`), as
cosign does by default; a trust root without CT logs (a private Sigstore) skips it. Not
checked: Rekor inclusion proofs, which the legacy layer does not carry.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook import images
from webhook.signatures import bundles, cosign, keys, sct, timestamps, transparency

CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
MAX_CHAIN = 8  # certificates between the leaf and a root; Fulcio uses one


class Rejected(Exception):
    """A keyless signature that is not valid; the message says why."""


_covers = transparency.covers


@dataclass(frozen=True)
class Authority:
    """A Fulcio CA: its root (the trust anchor), intermediates, and when it issued."""

    root: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    name: str = "Fulcio"


Log = transparency.Log


_spki = transparency.spki
_instant = transparency.instant


@dataclass(frozen=True)
class TrustRoot:
    """The Fulcio CAs and Rekor logs keyless signatures are checked against."""

    authorities: tuple[Authority, ...]
    logs: tuple[Log, ...]
    source: str = ""
    ct_logs: tuple[Log, ...] = ()  # empty: no CT log (a private Sigstore), SCTs not checked
    tsas: tuple[timestamps.Authority, ...] = ()

    @classmethod
    def from_pem(cls, fulcio: Sequence[bytes | str], rekor: Sequence[bytes | str],
                 source: str = "PEM files", ct: Sequence[bytes | str] = ()) -> TrustRoot:
        """Each `fulcio` item is one CA: PEM certificates, intermediates first, root last
        (the last one is the trust anchor). Each `rekor` item is a Rekor public key, each
        `ct` item a CT log's public key."""
        authorities = []
        for index, pem in enumerate(fulcio):
            data = pem.encode() if isinstance(pem, str) else pem
            try:
                certs = x509.load_pem_x509_certificates(data)
            except ValueError as exc:
                raise ValueError(f"{source}: Fulcio CA {index + 1} is not PEM certificates: "
                                 f"{exc}") from exc
            authorities.append(Authority(certs[-1], tuple(certs[:-1]),
                                         name=f"Fulcio CA {index + 1} of {source}"))
        logs = []
        for index, pem in enumerate(rekor):
            key = keys.load(pem, f"{source}: Rekor key {index + 1}")
            logs.append(Log(key, hashlib.sha256(_spki(key)).hexdigest(),
                            name=f"Rekor key {index + 1} of {source}"))
        ct_logs = []
        for index, pem in enumerate(ct):
            key = keys.load(pem, f"{source}: CT log key {index + 1}")
            ct_logs.append(Log(key, hashlib.sha256(_spki(key)).hexdigest(),
                               name=f"CT log key {index + 1} of {source}"))
        return cls(tuple(authorities), tuple(logs), source, tuple(ct_logs))

    @classmethod
    def from_trusted_root(cls, path: str) -> TrustRoot:
        """The `certificateAuthorities` and `tlogs` of a sigstore trusted_root.json."""
        try:
            data = json.loads(Path(path).read_bytes())
            authorities = tuple(cls._authority(ca, f"{path}: certificateAuthorities[{i}]")
                                for i, ca in enumerate(data.get("certificateAuthorities") or []))
            logs = tuple(cls._log(log, f"{path}: tlogs[{i}]")
                         for i, log in enumerate(data.get("tlogs") or []))
            ct_logs = tuple(cls._log(log, f"{path}: ctlogs[{i}]")
                            for i, log in enumerate(data.get("ctlogs") or []))
            tsas = timestamps.authorities(data, path)
        except OSError as exc:
            raise ValueError(f"trusted root {path}: cannot read it: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error,
                UnsupportedAlgorithm) as exc:
            raise ValueError(f"trusted root {path} is not a sigstore trusted_root.json: "
                             f"{type(exc).__name__}: {exc}") from exc
        return cls(authorities, logs, path, ct_logs, tsas)

    @staticmethod
    def _authority(ca: dict[str, Any], where: str) -> Authority:
        certs = [x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"], validate=True))
                 for c in ca["certChain"]["certificates"]]
        if not certs:
            raise ValueError(f"{where} has no certificates")
        valid = ca.get("validFor") or {}
        return Authority(certs[-1], tuple(certs[:-1]), _instant(valid.get("start"), where),
                         _instant(valid.get("end"), where), str(ca.get("uri") or where))

    @staticmethod
    def _log(log: dict[str, Any], where: str) -> Log:
        der = base64.b64decode(log["publicKey"]["rawBytes"], validate=True)
        key = serialization.load_der_public_key(der)
        pem = key.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        valid = log["publicKey"].get("validFor") or {}
        if not valid.get("start"):  # an open start would trust the key for any past entry
            raise ValueError(f"{where}: publicKey.validFor.start is missing")
        return Log(keys.load(pem, where), hashlib.sha256(der).hexdigest(),
                   _instant(valid.get("start"), where), _instant(valid.get("end"), where),
                   str(log.get("baseUrl") or where))


@functools.lru_cache(maxsize=8)
def trust_root(path: str | None = None) -> TrustRoot:
    """The trust root of a trusted_root.json; default: production, as for bundles."""
    return TrustRoot.from_trusted_root(bundles.trusted_root_file(path))


# -- the Rekor SET ---------------------------------------------------------------
Entry = transparency.Entry


def verify_set(bundle_annotation: str, trust: TrustRoot) -> Entry:
    """Check cosign's `bundle` annotation: {SignedEntryTimestamp, Payload: {body,
    integratedTime, logID, logIndex}}, the SET over the canonical JSON of Payload."""
    try:
        data = json.loads(bundle_annotation)
        signed = base64.b64decode(data["SignedEntryTimestamp"], validate=True)
        payload = data["Payload"]
        body, log_id = payload["body"], payload["logID"]
        integrated, index = payload["integratedTime"], payload["logIndex"]
        if not (isinstance(body, str) and isinstance(log_id, str)
                and type(integrated) is int and type(index) is int):
            raise TypeError("body/logID must be strings, integratedTime/logIndex integers")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise Rejected(f"the Rekor bundle annotation ({BUNDLE_ANNOTATION}) is malformed: "
                       f"{type(exc).__name__}: {exc}") from exc
    try:
        return transparency.verify_promise(body, integrated, log_id, index, signed, trust.logs)
    except transparency.Rejected as exc:
        raise Rejected(str(exc)) from exc


# -- the certificate path --------------------------------------------------------
def _issued(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _label(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def _check_ca(cert: x509.Certificate, below: int, when: datetime) -> None:
    """`cert` issues `below` intermediates' worth of path: it must be a CA, allowed to sign
    certificates that deep, and valid at `when`."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise Rejected(f"{_label(cert)} is not a CA (no basic constraints)") from None
    if not constraints.ca:
        raise Rejected(f"{_label(cert)} is not a CA (basic constraints CA:FALSE)")
    if constraints.path_length is not None and constraints.path_length < below:
        raise Rejected(f"{_label(cert)} allows {constraints.path_length} intermediates below "
                       f"it, the path has {below}")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise Rejected(f"{_label(cert)} may not sign certificates (key usage)")
    except x509.ExtensionNotFound:
        pass
    _check_time(cert, when)


def _check_time(cert: x509.Certificate, when: datetime) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise Rejected(f"{_label(cert)} was not valid at {when:%Y-%m-%d %H:%M:%S}Z (valid "
                       f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}–"
                       f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z)")


def _check_unknown_critical(cert: x509.Certificate) -> None:
    for ext in cert.extensions:
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise Rejected(f"{_label(cert)} has an unknown critical extension "
                           f"{ext.oid.dotted_string}")


def _check_leaf(leaf: x509.Certificate, when: datetime) -> None:
    """A Fulcio leaf: not a CA, for code signing, valid when the entry was logged."""
    _check_unknown_critical(leaf)
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise Rejected("the signing certificate is a CA certificate, not a Fulcio leaf")
    except x509.ExtensionNotFound:
        pass
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        raise Rejected("the signing certificate is not for code signing (extended key usage)")
    try:
        if not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            raise Rejected("the signing certificate may not make signatures (key usage)")
    except x509.ExtensionNotFound:
        pass
    try:
        _check_time(leaf, when)
    except Rejected as exc:
        raise Rejected(f"the signing certificate {exc}; the Rekor entry was logged outside "
                       f"its lifetime") from None


def _path(leaf: x509.Certificate, candidates: Sequence[x509.Certificate],
          authority: Authority, when: datetime) -> list[x509.Certificate]:
    """Leaf, intermediates, root: a path from `leaf` to the authority's root, checked at
    `when`. Rejected (with the reason) when no path exists or one on it is not valid."""
    path = [leaf]
    while len(path) <= MAX_CHAIN:
        current = path[-1]
        below = len(path) - 1  # intermediates already on the path
        if _issued(authority.root, current):
            _check_ca(authority.root, below, when)
            return [*path, authority.root]
        issuer = next((c for c in candidates if c not in path and _issued(c, current)), None)
        if issuer is None:
            break
        _check_unknown_critical(issuer)
        _check_ca(issuer, below, when)
        path.append(issuer)
    raise Rejected(f"the certificate does not chain to {authority.name} "
                   f"({_label(authority.root)})")


def verify_chain(leaf: x509.Certificate, chain: Sequence[x509.Certificate],
                 trust: TrustRoot, when: datetime) -> list[x509.Certificate]:
    """The path from `leaf` to a trusted Fulcio root that issued at `when`; `chain` holds
    the intermediates the signature carries (a root in it is not trusted for being there)."""
    _check_leaf(leaf, when)
    reasons = []
    for authority in trust.authorities:
        if not _covers(authority.start, authority.end, when):
            continue
        try:
            return _path(leaf, [*chain, *authority.intermediates], authority, when)
        except Rejected as exc:
            reasons.append(str(exc))
    if not reasons:
        raise Rejected(f"no trusted Fulcio CA was issuing at {when:%Y-%m-%d %H:%M:%S}Z "
                       f"({trust.source or 'trust root'})")
    raise Rejected(f"the signing certificate is not from a trusted Fulcio CA: "
                   f"{'; '.join(reasons)}")


# -- one signature ---------------------------------------------------------------
def is_keyless(signature: cosign.Signature) -> bool:
    return bool(signature.annotations.get(cosign.CERTIFICATE_ANNOTATION))


def verify(signature: cosign.Signature, digest: str, identities: Sequence[bundles.Identity],
           trust: TrustRoot, annotations: Mapping[str, str] | None = None,
           identity: images.Reference | None = None) -> cosign.Result:
    """Check one legacy keyless signature for the image `digest`.

    Valid when the signature verifies over the exact payload bytes with the leaf's key,
    a trusted Rekor log's SET vouches for an entry recording that signature and leaf, the
    leaf chains to a trusted Fulcio root at the entry's integratedTime, the leaf's identity
    (SAN and OIDC issuer) is one of `identities`, and the payload signs `digest` (with the
    required annotations and, when given, `identity`), as for key-based signatures.
    """
    try:
        return _verify(signature, digest, identities, trust, annotations, identity)
    except Rejected as exc:
        return cosign.Result(False, str(exc))


def _load_certificates(annotations: Mapping[str, str]) -> tuple[x509.Certificate,
                                                                 list[x509.Certificate]]:
    pem = annotations.get(cosign.CERTIFICATE_ANNOTATION, "")
    if not pem:
        raise Rejected(f"no {cosign.CERTIFICATE_ANNOTATION} annotation: a keyless signature "
                       f"needs its Fulcio certificate")
    try:
        leaf = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise Rejected(f"{cosign.CERTIFICATE_ANNOTATION} is not a PEM certificate: {exc}"
                       ) from exc
    chain_pem = annotations.get(CHAIN_ANNOTATION, "")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
    except ValueError as exc:
        raise Rejected(f"{CHAIN_ANNOTATION} is not PEM certificates: {exc}") from exc
    return leaf, chain


def _verify(signature: cosign.Signature, digest: str, identities: Sequence[bundles.Identity],
            trust: TrustRoot, annotations: Mapping[str, str] | None,
            identity: images.Reference | None) -> cosign.Result:
    if not identities:
        raise Rejected("keyless signature (a Fulcio certificate), and the rule has no keyless "
                       "identities")
    _load_certificates(signature.annotations)  # its reasons come first
    if not signature.signature:
        raise Rejected(f"no {cosign.SIGNATURE_ANNOTATION} annotation")
    try:
        raw = base64.b64decode(signature.signature, validate=True)
    except binascii.Error:
        raise Rejected(f"{cosign.SIGNATURE_ANNOTATION} is not base64") from None
    signer = certified_signer(signature.annotations, raw, signature.payload, identities, trust,
                              artifact_sha256=hashlib.sha256(signature.payload).hexdigest())
    why = cosign.check_payload(signature.payload, digest, annotations, identity)
    return cosign.Result(not why, why, signer)


def certified_signer(annotations: Mapping[str, str], raw: bytes, message: bytes,
                     identities: Sequence[bundles.Identity], trust: TrustRoot,
                     **records: Any) -> str:
    """Who made a keyless legacy signature `raw` over `message` (Rejected says why not):
    the leaf's key verifies it, a trusted Rekor SET vouches for an entry recording it
    (`records`: what the entry must log, see transparency.check_records), the leaf chains
    to a trusted Fulcio root at the entry's time, carries a trusted SCT, and is one of
    `identities`. Simple-signing `.sig` and DSSE `.att` layers share it."""
    if not identities:
        raise Rejected("keyless signature (a Fulcio certificate), and the rule has no keyless "
                       "identities")
    leaf, chain = _load_certificates(annotations)
    try:
        key = keys.load(leaf.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            "the signing certificate")
    except (keys.BadKey, UnsupportedAlgorithm) as exc:
        raise Rejected(str(exc)) from exc
    if not keys.verifies(key, raw, message):
        raise Rejected("the signature does not verify with the signing certificate's key")
    bundle = annotations.get(BUNDLE_ANNOTATION, "")
    if not bundle:
        raise Rejected(f"no Rekor SET ({BUNDLE_ANNOTATION} annotation): without the "
                       f"transparency log's time the short-lived certificate cannot be trusted")
    entry = verify_set(bundle, trust)
    assert entry.integrated is not None  # a SET always carries its time
    try:
        transparency.check_records(entry, signature=raw, key=key, cert=leaf, **records)
    except transparency.Rejected as exc:
        raise Rejected(str(exc)) from exc
    path = verify_chain(leaf, chain, trust, entry.integrated)
    if trust.ct_logs:
        try:
            sct.verify(leaf, path[1], trust.ct_logs)
        except sct.Rejected as exc:
            raise Rejected(str(exc)) from exc
    issuer, sans = bundles.certificate_identity(leaf)
    signer = f"{', '.join(sans) or 'no subject'} ({issuer or 'no issuer'})"
    if not any(wanted.matches(issuer, sans) for wanted in identities):
        raise Rejected(f"the certificate is for {signer}, not "
                       f"{' or '.join(map(str, identities))}")
    return signer


# -- key-based signatures with a Rekor entry ----------------------------------------
def check_logged(signature: cosign.Signature, key: keys.PublicKey, trust: TrustRoot,
                 tlog: transparency.Mode) -> str:
    """Why a key-based `.sig` signature fails the rule's `tlog` ("" when it passes)."""
    try:
        raw = base64.b64decode(signature.signature, validate=True)
    except binascii.Error:
        return f"{cosign.SIGNATURE_ANNOTATION} is not base64"
    return check_logged_records(signature.annotations, raw, key, trust, tlog,
                                artifact_sha256=hashlib.sha256(signature.payload).hexdigest())


def check_logged_records(annotations: Mapping[str, str], raw: bytes, key: keys.PublicKey,
                         trust: TrustRoot, tlog: transparency.Mode, **records: Any) -> str:
    """Why a key-based legacy signature `raw` fails the rule's `tlog` ("" when it passes):
    its `bundle` annotation (the Rekor SET) must verify and record this signature by this
    key (`records`, see transparency.check_records) when present; `required` wants one."""
    if tlog == "off":
        return ""
    annotation = annotations.get(BUNDLE_ANNOTATION, "")
    if not annotation:
        return ("no Rekor entry (dev.sigstore.cosign/bundle annotation), and the rule has "
                "tlog: required (sign with cosign's transparency log, or set tlog: optional)"
                if tlog == "required" else "")
    try:
        entry = verify_set(annotation, trust)
        transparency.check_records(entry, signature=raw, key=key, **records)
    except (Rejected, transparency.Rejected) as exc:
        return f"transparency log: {exc}"
    return ""

"""Keyless DSSE bundles logged as Rekor `intoto` 0.0.2 entries, which sigstore-python does
not verify ("Integrated time only supported for dsse/hashedrekord 0.0.1 types").

npm provenance and other v0.1 / v0.2 bundles of 2023-2024 carry them, and so do six cases
of the sigstore conformance suite. Verified here from the parts mlgate has: the envelope's
one signature with the leaf's key over the DSSE PAE; every log entry's SET and inclusion
proof with signed checkpoint (a v0.2+ bundle must carry the proof) recording that
signature, leaf and payload; each RFC 3161 timestamp from a trusted TSA; the leaf chaining
to a trusted Fulcio CA and inside its own lifetime at every verified time (integrated
times and timestamps); its SCT from a trusted CT log; and the identity.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

from webhook.signatures import bundles, fulcio, keys, sct, timestamps, transparency

KINDS = {("intoto", "0.0.2")}


def handles(data: dict[str, Any]) -> bool:
    """Whether the bundle is DSSE and logged only in entries sigstore-python cannot verify."""
    entries = (data.get("verificationMaterial") or {}).get("tlogEntries") or []
    kinds = {(str((e.get("kindVersion") or {}).get("kind")),
              str((e.get("kindVersion") or {}).get("version")))
             for e in entries if isinstance(e, dict)}
    return "dsseEnvelope" in data and bool(kinds) and kinds <= KINDS


def _leaf_and_chain(material: dict[str, Any]) -> tuple[x509.Certificate,
                                                       list[x509.Certificate]]:
    if "certificate" in material:
        raws = [material["certificate"]["rawBytes"]]
    else:
        raws = [c["rawBytes"] for c in material["x509CertificateChain"]["certificates"]]
    if not raws:
        raise fulcio.Rejected("the bundle's certificate chain is empty: no signing certificate")
    certs = [x509.load_der_x509_certificate(base64.b64decode(r, validate=True)) for r in raws]
    return certs[0], certs[1:]


def verify(data: dict[str, Any], digest: str, identities: Sequence[bundles.Identity],
           trust: fulcio.TrustRoot) -> bundles.Content:
    """The core's verdict on such a bundle (see the module docstring)."""
    try:
        return _verify(data, digest, identities, trust)
    except (fulcio.Rejected, transparency.Rejected, sct.Rejected, timestamps.Rejected) as exc:
        return bundles.Content(False, str(exc))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        return bundles.Content(False, f"malformed bundle: {type(exc).__name__}: {exc}")


def _verify(data: dict[str, Any], digest: str, identities: Sequence[bundles.Identity],
            trust: fulcio.TrustRoot) -> bundles.Content:
    material = data["verificationMaterial"]
    leaf, chain = _leaf_and_chain(material)
    envelope = data["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"], validate=True)
    payload_type = str(envelope["payloadType"])
    if len(envelope.get("signatures") or []) != 1:
        raise fulcio.Rejected(f"a DSSE envelope in a bundle has exactly one signature, this "
                              f"one has {len(envelope.get('signatures') or [])}")
    signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
    key = keys.load(transparency.spki_pem(leaf.public_key()), "the signing certificate")
    if not keys.verifies(key, signature, bundles.pae(payload_type, payload)):
        raise fulcio.Rejected("the DSSE signature does not verify with the signing "
                              "certificate's key")
    times: list[tuple[datetime, str]] = []
    needs_proof = data.get("mediaType") != f"{bundles.BUNDLE_PREFIX}+json;version=0.1"
    for item in material.get("tlogEntries") or []:
        if needs_proof and not item.get("inclusionProof"):
            raise transparency.Rejected("the log entry has no inclusion proof, which a v0.2+ "
                                        "bundle must carry (no online lookup)")
        entry = transparency.verify_bundle_entry(item, trust.logs)
        transparency.check_records(entry, signature=signature, key=key, cert=leaf,
                                   payload_type=payload_type, payload=payload)
        if entry.integrated is not None:
            times.append((entry.integrated, f"Rekor entry {entry.index}'s integrated time"))
    stamps = (material.get("timestampVerificationData") or {}).get("rfc3161Timestamps") or []
    for stamp in stamps:
        times.append((timestamps.verify(stamp["signedTimestamp"], signature, trust.tsas),
                      "the RFC 3161 timestamp"))
    if not times:
        raise transparency.Rejected("no verified time: neither a log entry with an integrated "
                                    "time nor an RFC 3161 timestamp")
    path: list[x509.Certificate] = []
    for when, source in times:
        try:
            path = fulcio.verify_chain(leaf, chain, trust, when)
        except fulcio.Rejected as exc:
            raise fulcio.Rejected(f"at {source}: {exc}") from exc
    if trust.ct_logs:
        sct.verify(leaf, path[1], trust.ct_logs)
    issuer, sans = bundles.certificate_identity(leaf)
    signer = f"{', '.join(sans) or 'no subject'} ({issuer or 'no issuer'})"
    if not any(wanted.matches(issuer, sans) for wanted in identities):
        raise fulcio.Rejected(f"the certificate is for {signer}, not "
                              f"{' or '.join(map(str, identities))}")
    why = bundles.check_subject(payload_type, payload, digest)
    return bundles.Content(not why, why, signer, payload_type, payload)

"""Certificate Transparency: the SCT Fulcio embeds in every certificate it issues.

Fulcio logs each certificate (as a precertificate) in a CT log before issuing it, and
embeds the log's signed certificate timestamp (SCT, RFC 6962 §3.2) in the certificate.
cosign checks it by default: without it, a compromised Fulcio could issue certificates
nobody can see. The SCT is the log's signature over

    version (0) || signature_type (0, certificate_timestamp) || timestamp (ms, u64)
    || entry_type (1, precert_entry) || sha256(issuer's SubjectPublicKeyInfo)
    || u24 length || the certificate's TBS without the SCT extension
    || u16 length || the SCT's extensions

and the log is known by its ID, sha256 of its key's DER SubjectPublicKeyInfo, in the
`ctlogs` of the trusted root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509 import certificate_transparency as ct

from webhook.signatures import keys, transparency

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Rejected(Exception):
    """No embedded SCT of a trusted CT log verifies; the message says why."""


def _millis(when: datetime) -> int:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(milliseconds=1)


def signed_data(sct: ct.SignedCertificateTimestamp, cert: x509.Certificate,
                issuer: x509.Certificate) -> bytes:
    """What the CT log signed for an SCT embedded in `cert` (issued by `issuer`)."""
    tbs = cert.tbs_precertificate_bytes
    extensions = sct.extension_bytes
    return (b"\x00\x00" + _millis(sct.timestamp).to_bytes(8, "big") + b"\x00\x01"
            + hashlib.sha256(transparency.spki(issuer.public_key())).digest()
            + len(tbs).to_bytes(3, "big") + tbs
            + len(extensions).to_bytes(2, "big") + extensions)


def verify(cert: x509.Certificate, issuer: x509.Certificate,
           logs: Sequence[transparency.Log]) -> transparency.Log:
    """The CT log whose embedded SCT in `cert` verifies; Rejected otherwise."""
    try:
        found = cert.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound:
        raise Rejected("the signing certificate has no embedded SCT (it was not logged in a "
                       "certificate transparency log)") from None
    reasons = []
    for item in found:
        log_id = item.log_id.hex()
        log = next((log for log in logs if log.log_id == log_id), None)
        if log is None:
            reasons.append(f"SCT of CT log {log_id[:16]}…, which is not trusted")
            continue
        when = item.timestamp.replace(tzinfo=UTC)
        if not transparency.covers(log.start, log.end, when):
            reasons.append(f"SCT of {log.name} at {when:%Y-%m-%d %H:%M:%S}Z, outside its "
                           f"validity")
            continue
        if keys.verifies(log.key, item.signature, signed_data(item, cert, issuer)):
            return log
        reasons.append(f"the SCT of {log.name} does not verify with its key")
    trusted = ", ".join(f"{log.log_id[:16]}… ({log.name})" for log in logs) or "none"
    raise Rejected(f"no embedded SCT verifies: {'; '.join(reasons) or 'none found'} "
                   f"(trusted CT logs: {trusted})")

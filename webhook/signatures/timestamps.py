"""RFC 3161 timestamps: a timestamp authority (TSA) vouching that a signature existed at a
time, checked against the `timestampAuthorities` of the trusted root.

A bundle's `timestampVerificationData.rfc3161Timestamps[]` holds TimeStampResponses over
the signature bytes. One counts when a trusted TSA's chain verifies it (rfc3161-client, the
library sigstore-python uses for the same job), its message imprint is the signature's
hash, and its time lies in the TSA's validity window of the trusted root (both ends
inclusive). The time then stands in for the log's integrated time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc3161_client
from cryptography import x509

from webhook.signatures import transparency


class Rejected(Exception):
    """A timestamp no trusted TSA vouches for; the message says why."""


@dataclass(frozen=True)
class Authority:
    """A TSA of the trusted root: its signing certificate, intermediates, root, window."""

    chain: tuple[x509.Certificate, ...]  # leaf first, root last
    start: datetime | None
    end: datetime | None
    name: str


def authorities(data: dict[str, Any], where: str) -> tuple[Authority, ...]:
    """The `timestampAuthorities` of a parsed trusted_root.json."""
    found = []
    for index, tsa in enumerate(data.get("timestampAuthorities") or []):
        here = f"{where}: timestampAuthorities[{index}]"
        certs = tuple(x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"],
                                                                      validate=True))
                      for c in tsa["certChain"]["certificates"])
        if not certs:
            raise ValueError(f"{here} has no certificates")
        valid = tsa.get("validFor") or {}
        start, end = (transparency.instant(valid.get(k), here) for k in ("start", "end"))
        found.append(Authority(certs, start, end, str(tsa.get("uri") or here)))
    return tuple(found)


def verify(signed_timestamp: str, signature: bytes, tsas: Sequence[Authority]) -> datetime:
    """The time a trusted TSA vouches `signature` existed at; Rejected otherwise."""
    try:
        response = rfc3161_client.decode_timestamp_response(
            base64.b64decode(signed_timestamp, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise Rejected(f"the RFC 3161 timestamp is malformed: {exc}") from exc
    when = response.tst_info.gen_time.astimezone(UTC)
    reasons = []
    for tsa in tsas:
        verifier = rfc3161_client.VerifierBuilder(
            tsa_certificate=tsa.chain[0], intermediates=list(tsa.chain[1:-1]),
            roots=[tsa.chain[-1]]).build()
        try:
            verifier.verify_message(response, signature)
        except rfc3161_client.VerificationError as exc:
            reasons.append(f"{tsa.name}: {exc}")
            continue
        if not transparency.covers(tsa.start, tsa.end, when):
            reasons.append(f"{tsa.name} was not trusted at {when:%Y-%m-%d %H:%M:%S}Z")
            continue
        return when
    why = "; ".join(reasons) or "no TSA in the trusted root"
    raise Rejected(f"no trusted TSA vouches for the timestamp ({why})")

"""Rekor transparency-log entries: is this signature publicly logged, and when?

A log entry vouches for a signature in one of two ways, both checked against the Rekor
keys of the trusted root:

- the signed entry timestamp (SET, a bundle's `inclusionPromise`, cosign's `bundle`
  annotation): the log's signature over the canonical JSON (sorted keys, no spaces) of
  {body, integratedTime, logID, logIndex}, a promise to include the entry;
- an inclusion proof (RFC 9162 §2.1.3: the audit path from the entry's leaf hash,
  sha256(0x00 || body), to the tree's root) and a signed checkpoint (a C2SP signed note:
  origin, tree size and root hash, signed by the log) naming that root.

Either way the logged body must record *this* signature over *this* artifact by *this*
key or certificate, or the log vouches for something else. Entries of Rekor v2
(`hashedrekord` 0.0.2) carry no integrated time and are checked for keyless bundles (by
sigstore-python); for key-based bundles an RFC 3161 timestamp (`timestamps`) is the
evidence mlgate accepts besides Rekor v1 entries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from webhook.signatures import keys

Mode = Literal["required", "optional", "off"]
MODES: tuple[Mode, ...] = ("required", "optional", "off")


class Rejected(Exception):
    """A log entry that does not vouch for the signature; the message says why."""


@dataclass(frozen=True)
class Log:
    """A Rekor log: its key, its log ID (sha256 of the key's DER SubjectPublicKeyInfo)."""

    key: keys.PublicKey
    log_id: str
    start: datetime | None = None
    end: datetime | None = None
    name: str = "Rekor"


@dataclass(frozen=True)
class Entry:
    """A log entry whose SET or inclusion proof verified: when, by which log, what it holds."""

    body: dict[str, Any]
    integrated: datetime | None
    log: Log
    index: int
    how: str  # "SET" | "inclusion proof"


def covers(start: datetime | None, end: datetime | None, when: datetime) -> bool:
    """Whether `when` is inside a validity window; both ends are inclusive."""
    return (start is None or start <= when) and (end is None or when <= end)


def instant(value: Any, where: str) -> datetime | None:
    """A trusted root's `validFor` bound (RFC 3339) as an aware time; None when open."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"{where}: {value!r} is not an RFC 3339 time") from exc


def spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def spki_pem(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def find_log(logs: Sequence[Log], log_id: str) -> Log:
    log = next((log for log in logs if log.log_id == log_id.lower()), None)
    if log is None:
        trusted = ", ".join(f"{log.log_id[:16]}… ({log.name})" for log in logs) or "none"
        raise Rejected(f"the SET comes from Rekor log {log_id[:16]}…, which is not trusted "
                       f"(trusted: {trusted})")
    return log


def _decode_body(body: str) -> dict[str, Any]:
    try:
        entry = json.loads(base64.b64decode(body, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise Rejected(f"the log entry body is not base64 JSON: {exc}") from exc
    if not isinstance(entry, dict):
        raise Rejected("the log entry body is not a JSON object")
    return entry


def verify_promise(body: str, integrated: int, log_id: str, index: int, signed: bytes,
                   logs: Sequence[Log]) -> Entry:
    """Check a SET: the log's signature over the canonical JSON of the entry."""
    log = find_log(logs, log_id)
    canonical = json.dumps({"body": body, "integratedTime": integrated, "logID": log_id,
                            "logIndex": index}, sort_keys=True, separators=(",", ":")).encode()
    if not keys.verifies(log.key, signed, canonical):
        raise Rejected(f"the Rekor SET does not verify with the key of {log.name}")
    when = datetime.fromtimestamp(integrated, UTC)
    _check_window(log, when)
    return Entry(_decode_body(body), when, log, index, "SET")


def _check_window(log: Log, when: datetime) -> None:
    if not covers(log.start, log.end, when):
        raise Rejected(f"the entry was logged at {when:%Y-%m-%d %H:%M:%S}Z, outside the "
                       f"validity of {log.name}")


# -- inclusion proofs and checkpoints ------------------------------------------------
def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_proof(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The tree root an inclusion proof leads to (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise Rejected(f"inclusion proof: leaf index {index} is outside a tree of {size}")
    fn, sn, r = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        if sn == 0:
            raise Rejected("inclusion proof: the audit path is longer than the tree")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Rejected("inclusion proof: the audit path is shorter than the tree")
    return r


def verify_checkpoint(envelope: str, log: Log) -> tuple[int, bytes]:
    """(tree size, root hash) of a signed note that `log` signed.

    The note is `origin\\nsize\\nroot\\n[extensions]\\n\\n` then signature lines
    `— <name> base64(4-byte key hint || signature)`; the log's line has the origin's
    host as name and the first 4 bytes of its log ID as hint. Other lines (witness
    cosignatures) are ignored.
    """
    text, sep, signatures = envelope.partition("\n\n")
    lines = text.split("\n")
    if not sep or len(lines) < 3:
        raise Rejected("the checkpoint is not a signed note (origin, size, root hash, "
                       "blank line, signatures)")
    origin, size_text, root_text = lines[:3]
    try:
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise Rejected(f"the checkpoint's size or root hash is malformed: {exc}") from exc
    signed = (text + "\n").encode()
    name = origin.split(" ", 1)[0]
    hint = bytes.fromhex(log.log_id)[:4]
    for line in signatures.split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != name:
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        if raw[:4] == hint and keys.verifies(log.key, raw[4:], signed):
            return size, root
    raise Rejected(f"the checkpoint carries no valid signature of {log.name} for origin "
                   f"{origin!r}")


def verify_inclusion(body: str, proof: dict[str, Any], log: Log) -> Entry:
    """Check an inclusion proof and the checkpoint that signs its root."""
    try:
        index, size = int(proof["logIndex"]), int(proof["treeSize"])
        root = base64.b64decode(proof["rootHash"], validate=True)
        path = [base64.b64decode(h, validate=True) for h in proof.get("hashes") or []]
        envelope = (proof.get("checkpoint") or {}).get("envelope")
        leaf = base64.b64decode(body, validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise Rejected(f"the inclusion proof is malformed: {type(exc).__name__}: {exc}"
                       ) from exc
    if not isinstance(envelope, str) or not envelope:
        raise Rejected("the inclusion proof has no signed checkpoint: nothing vouches for "
                       "its root hash")
    if root_from_proof(leaf, index, size, path) != root:
        raise Rejected("the inclusion proof does not lead to its root hash")
    signed_size, signed_root = verify_checkpoint(envelope, log)
    if (signed_size, signed_root) != (size, root):
        raise Rejected(f"the checkpoint signs a tree of {signed_size} with another root "
                       f"hash, not the proof's tree of {size}")
    return Entry(_decode_body(body), None, log, index, "inclusion proof")


def verify_bundle_entry(entry: dict[str, Any], logs: Sequence[Log]) -> Entry:
    """A bundle's `tlogEntries[]` item: its SET and, when present, its inclusion proof
    (both must hold); at least one of them. The entry's integrated time comes from the SET
    (or from the entry, once the inclusion proof verified)."""
    try:
        body = str(entry["canonicalizedBody"])
        log_id = base64.b64decode(entry["logId"]["keyId"], validate=True).hex()
        index = int(entry["logIndex"])
        integrated = int(entry.get("integratedTime") or 0)
        promise = (entry.get("inclusionPromise") or {}).get("signedEntryTimestamp")
        proof = entry.get("inclusionProof")
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise Rejected(f"the log entry is malformed: {type(exc).__name__}: {exc}") from exc
    if index < 0:
        raise Rejected(f"the log entry has a negative index {index}")
    log = find_log(logs, log_id)
    found: Entry | None = None
    if promise:
        try:
            signed = base64.b64decode(promise, validate=True)
        except binascii.Error as exc:
            raise Rejected("the SET is not base64") from exc
        found = verify_promise(body, integrated, log_id, index, signed, logs)
    if proof:
        proved = verify_inclusion(body, proof, log)
        if found is None and integrated:
            when = datetime.fromtimestamp(integrated, UTC)
            _check_window(log, when)
            found = Entry(proved.body, when, log, index, "inclusion proof")
        elif found is not None:
            found = Entry(found.body, found.integrated, log, index, "SET and inclusion proof")
        found = found or proved
    if found is None:
        raise Rejected("the log entry has neither a SET nor an inclusion proof")
    return found


# -- what the entry records ------------------------------------------------------------
def _same_key(logged: bytes, key: keys.PublicKey, cert: x509.Certificate | None) -> bool:
    """Whether a PEM certificate or key in a log entry is the signer's."""
    try:
        found = x509.load_pem_x509_certificate(logged)
        return found == cert if cert is not None else spki(found.public_key()) == spki(key)
    except ValueError:
        try:
            return spki(serialization.load_pem_public_key(logged)) == spki(key)
        except (ValueError, UnsupportedAlgorithm):
            return False


def _b64(value: Any) -> bytes:
    return base64.b64decode(str(value), validate=True)


def _twice(value: Any) -> bytes:
    """A signature base64-encoded twice (intoto 0.0.2); b"" when it is not."""
    try:
        return base64.b64decode(base64.b64decode(str(value), validate=True), validate=True)
    except (binascii.Error, ValueError):
        return b""


def check_records(entry: Entry, *, signature: bytes, key: keys.PublicKey,
                  cert: x509.Certificate | None = None, artifact_sha256: str | None = None,
                  payload_type: str | None = None, payload: bytes | None = None) -> None:
    """The entry must log this signature by this key (or certificate) over this artifact
    (a hashedrekord of the artifact's sha256) or this DSSE envelope (dsse, intoto)."""
    kind = entry.body.get("kind")
    version = entry.body.get("apiVersion")
    spec: Any = entry.body.get("spec")
    where = f"Rekor entry {entry.index} ({kind} {version})"
    try:
        if kind in ("hashedrekord", "rekord") and version == "0.0.1" and payload is None:
            hashed = spec["data"]["hash"]
            if hashed.get("algorithm") != "sha256" or hashed.get("value") != artifact_sha256:
                raise Rejected(f"{where} logs another artifact (sha256 "
                               f"{str(hashed.get('value'))[:16]}…), not this one")
            pairs = [(_b64(spec["signature"]["content"]),
                      _b64(spec["signature"]["publicKey"]["content"]))]
        elif kind == "dsse" and version == "0.0.1" and payload is not None:
            if spec["payloadHash"].get("value") != hashlib.sha256(payload).hexdigest():
                raise Rejected(f"{where} logs another DSSE payload, not this one")
            pairs = [(_b64(s["signature"]), _b64(s["verifier"])) for s in spec["signatures"]]
        elif kind == "intoto" and version == "0.0.1" and payload is not None:
            # cosign's legacy `attest`: the entry keeps hashes and the key, not the signature
            content = spec["content"]
            if content.get("payloadHash", {}).get("value") != hashlib.sha256(payload).hexdigest():
                raise Rejected(f"{where} logs another DSSE payload, not this one")
            pairs = [(signature, _b64(spec["publicKey"]))]
        elif kind == "intoto" and version == "0.0.2" and payload is not None:
            content = spec["content"]
            if content.get("payloadHash", {}).get("value") != hashlib.sha256(payload).hexdigest():
                raise Rejected(f"{where} logs another DSSE payload, not this one")
            envelope = content["envelope"]
            if envelope.get("payloadType") != payload_type:
                raise Rejected(f"{where} logs another payload type")
            # intoto 0.0.2 stores the DSSE signature base64-encoded twice
            pairs = [(_twice(s["sig"]), _b64(s["publicKey"]))
                     for s in envelope["signatures"]]
        else:
            what = "a DSSE envelope" if payload is not None else "a message signature"
            raise Rejected(f"{where} cannot record {what}")
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise Rejected(f"{where} is malformed: {type(exc).__name__}: {exc}") from exc
    if not any(sig == signature for sig, _ in pairs):
        raise Rejected(f"{where} logs another signature, not this one")
    if not any(sig == signature and _same_key(logged, key, cert) for sig, logged in pairs):
        raise Rejected(f"{where} logs another certificate or key, not the signer's")


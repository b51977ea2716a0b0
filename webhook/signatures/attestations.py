"""In-toto attestations of an image, and the requirements a rule sets on them.

An attestation is a signed in-toto statement about the image (SLSA provenance, a
vulnerability scan, an SBOM): a DSSE envelope whose payload is a statement with the image
digest as subject and a `predicateType` saying what the `predicate` holds. cosign stores
them two ways, both read here:

- legacy: layers of type `application/vnd.dsse.envelope.v1+json` in the manifest at tag
  `sha256-<hex>.att`, each one envelope, with the same certificate / chain / Rekor
  `bundle` annotations as `.sig` layers when keyless;
- sigstore bundles attached as OCI referrers (the tag fallback where the registry has no
  referrers API), whose DSSE statement has a predicate other than cosign's signing one.

An attestation counts only when it verifies with the rule's keys or keyless identities,
exactly as signatures do, and names the image's digest as a subject. A requirement names
a predicate type and CEL conditions over `predicate`, `statement` and `now` (a timestamp):
at least one attestation of that type must meet all of them. When none does, the reason
names the condition that failed and the values of the fields it reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cel as cel_lib

from webhook.signatures import bundles, cosign, fulcio, keys, transparency

ENVELOPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_ANNOTATION = "predicateType"
# a field path an expression reads, up to a method or macro call (`.exists(`, `.size(`)
_PATH = re.compile(r"\b(?:predicate|statement)(?:\.[A-Za-z_][A-Za-z0-9_]*\b(?!\s*\())+")
MAX_VALUE = 200  # characters of a field's value quoted in a message


@dataclass(frozen=True)
class Condition:
    """One CEL expression an attestation's statement must make true."""

    expression: str
    program: Any = field(compare=False, repr=False)


# cosign's `--type` names for the predicate types it knows
ALIASES = {
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "link": "https://in-toto.io/Link/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
}


@dataclass(frozen=True)
class Requirement:
    """An attestation of one of `predicate_types` meeting every condition must exist."""

    name: str
    predicate_types: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()

    @property
    def predicate_type(self) -> str:
        return " or ".join(self.predicate_types)

    @classmethod
    def build(cls, name: str, predicate_type: str | Sequence[str], expressions: Sequence[str],
              where: str) -> Requirement:
        """Compile the conditions; a ValueError names `where` and the expression.
        A predicate type may be one of cosign's `--type` names (ALIASES)."""
        names = [predicate_type] if isinstance(predicate_type, str) else list(predicate_type)
        if not names:
            raise ValueError(f"{where}.predicateType: give at least one predicate type")
        types = tuple(dict.fromkeys(ALIASES.get(n, n) for n in names))
        conditions = []
        for index, expression in enumerate(expressions):
            try:
                conditions.append(Condition(expression, cel_lib.compile(expression)))
            except Exception as exc:  # the binding raises ValueError; be sure of the wording
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"{where}.conditions[{index}] {expression!r} is not CEL: "
                                 f"{first}") from exc
        return cls(name, types, tuple(conditions))


@dataclass(frozen=True)
class Attestation:
    """A verified statement about the image: who signed it and where it was found."""

    predicate_type: str
    statement: Mapping[str, Any]
    signer: str
    where: str

    @property
    def predicate(self) -> Any:
        """The predicate; one held as a JSON string (cosign's SPDX) is parsed."""
        value = self.statement.get("predicate")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


def from_payload(payload: bytes, signer: str, where: str) -> Attestation:
    """The attestation of a verified in-toto payload (its subject already checked)."""
    statement = json.loads(payload)
    return Attestation(str(statement.get("predicateType", "")), statement, signer, where)


# -- legacy `.att` layers ------------------------------------------------------------
def _envelope(data: bytes) -> tuple[str, bytes, list[bytes]]:
    envelope = json.loads(data)
    payload = base64.b64decode(envelope["payload"], validate=True)
    signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    if not signatures:
        raise ValueError("the DSSE envelope has no signatures")
    return str(envelope["payloadType"]), payload, signatures


def verify_envelope(data: bytes, annotations: Mapping[str, str], digest: str,
                    public_keys: Sequence[tuple[str, keys.PublicKey]],
                    identities: Sequence[bundles.Identity], trust: fulcio.TrustRoot | None,
                    tlog: transparency.Mode, where: str) -> Attestation | str:
    """A legacy DSSE envelope (a `.att` layer, or a `cosign attest-blob` file) as an
    attestation of `digest`; the reason (a str) when it is not one."""
    try:
        payload_type, payload, signatures = _envelope(data)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return f"not a DSSE envelope: {type(exc).__name__}: {exc}"
    message = bundles.pae(payload_type, payload)
    records = {"payload_type": payload_type, "payload": payload}
    reasons = []
    if annotations.get(cosign.CERTIFICATE_ANNOTATION):
        if trust is None:
            return "keyless attestation, and no trusted root"
        for raw in signatures:
            try:
                signer = fulcio.certified_signer(annotations, raw, message, identities, trust,
                                                 **records)
                break
            except fulcio.Rejected as exc:
                reasons.append(str(exc))
        else:
            return "; ".join(reasons)
    else:
        found = next(((name, key, raw) for name, key in public_keys for raw in signatures
                      if keys.verifies(key, raw, message)), None)
        if found is None:
            names = ", ".join(name for name, _ in public_keys) or "none configured"
            return f"the DSSE signature does not verify with the rule's keys ({names})"
        signer, key, raw = found
        if trust is not None or tlog == "required":
            why = (fulcio.check_logged_records(annotations, raw, key, trust, tlog, **records)
                   if trust is not None else "no trusted root to check the Rekor entry")
            if why:
                return why
    why = bundles.check_subject(payload_type, payload, digest)
    if why:
        return why
    try:
        return from_payload(payload, signer, where)
    except (ValueError, AttributeError) as exc:
        return f"the statement is not JSON: {exc}"


# -- requirements ----------------------------------------------------------------------
def _render(value: Any) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "…"


def _values(expression: str, variables: dict[str, Any]) -> str:
    """`path = value` for each predicate / statement field the expression reads."""
    shown = []
    for path in dict.fromkeys(_PATH.findall(expression)):
        try:
            value = cel_lib.compile(path).execute(variables)
            shown.append(f"{path} = {_render(value)}")
        except Exception:  # noqa: BLE001 - a field that is absent is worth saying so
            shown.append(f"{path} is absent")
    return "; ".join(shown)


def _unmet(requirement: Requirement, attestation: Attestation, now: datetime) -> str:
    """Why `attestation` does not meet `requirement` ("" when it does)."""
    variables = {"predicate": attestation.predicate, "statement": dict(attestation.statement),
                 "now": now}
    for condition in requirement.conditions:
        try:
            result = condition.program.execute(variables)
        except Exception as exc:  # any evaluation error of user CEL is a failed condition
            detail = (f"no field {exc.args[0]!r}" if isinstance(exc, KeyError)
                      else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return (f"condition `{condition.expression}` could not be evaluated ({detail}); "
                    f"{_values(condition.expression, variables)}")
        if result is not True:
            values = _values(condition.expression, variables)
            return (f"condition `{condition.expression}` is {json.dumps(result, default=str)}"
                    + (f" ({values})" if values else ""))
    return ""


def evaluate(requirement: Requirement, found: Sequence[Attestation], now: datetime) -> str:
    """Why no attestation meets `requirement` ("" when one does)."""
    candidates = [a for a in found if a.predicate_type in requirement.predicate_types]
    if not candidates:
        others = sorted({a.predicate_type for a in found})
        return (f"attestation {requirement.name!r}: no verified attestation of predicateType "
                f"{requirement.predicate_type}"
                + (f" (verified: {', '.join(others)})" if others else ""))
    reasons = []
    for attestation in candidates:
        why = _unmet(requirement, attestation, now)
        if not why:
            return ""
        reasons.append(f"{attestation.where} by {attestation.signer}: {why}")
    return f"attestation {requirement.name!r} ({requirement.predicate_type}): " + \
        "; ".join(reasons)


def fingerprint(requirements: Sequence[Requirement]) -> str:
    """A stable digest of the requirements, for cache keys."""
    text = repr([(r.name, r.predicate_types, [c.expression for c in r.conditions])
                 for r in requirements])
    return hashlib.sha256(text.encode()).hexdigest()[:16]

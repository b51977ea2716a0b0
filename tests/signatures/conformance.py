"""The sigstore conformance suite's bundle-verification cases, run through mlgate's
verification core (`bundles.verify_content`): each case's bundle over its artifact's
sha256, with the case's trusted root and its key or certificate identity, as the suite's
`verify-bundle` does. Run `python -m tests.signatures.conformance` for the figures.

The data is third-party (../shared/signatures/conformance, described in its SOURCES.md);
this module only reads it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.signatures import bundles, keys

HERE = Path(__file__).resolve().parents[2]
SUITE = HERE.parent / "shared" / "signatures" / "conformance"

# Cases mlgate does not get right, with the reason (none: sigstore-python's two misses, which
# the suite's CI expects of it, are covered: Rekor intoto 0.0.2 entries are verified by mlgate
# itself, webhook/signatures/intoto_entries.py, and TSA validity ends are made inclusive,
# bundles.trusted_root).
KNOWN_MISSES: dict[str, str] = {}


@dataclass(frozen=True)
class Outcome:
    case: str
    expect: str  # pass | fail
    got: str  # pass | fail
    reason: str

    @property
    def agrees(self) -> bool:
        return self.expect == self.got


def cases(suite: Path = SUITE) -> list[dict[str, Any]]:
    return list(json.loads((suite / "cases.json").read_text())["cases"])


def run(case: dict[str, Any], suite: Path = SUITE) -> Outcome:
    """One case through the core, the way the suite's client verifies it."""
    bundle = (suite / case["bundle"]).read_bytes()
    digest = "sha256:" + case["artifact_sha256"]
    root = str(suite / case["trusted_root"])
    if case["mode"] == "public-key":
        try:
            key = keys.load((suite / case["key"]).read_bytes(), "key.pub")
        except keys.BadKey as exc:
            return Outcome(case["case"], case["expect"], "fail", str(exc))
        content = bundles.verify_content(bundle, digest, [("key.pub", key)],
                                         trusted_root_path=root, tlog="required")
    else:
        identity = bundles.Identity(issuer=case["issuer"], subject=case["identity"])
        content = bundles.verify_content(bundle, digest, identities=[identity],
                                         trusted_root_path=root)
    return Outcome(case["case"], case["expect"], "pass" if content.valid else "fail",
                   content.reason)


def main() -> int:
    if not SUITE.is_dir():
        print(f"conformance suite not found at {SUITE}", file=sys.stderr)
        return 2
    outcomes = [run(case) for case in cases()]
    for o in outcomes:
        mark = "ok  " if o.agrees else ("MISS" if o.case in KNOWN_MISSES else "FAIL")
        print(f"{mark} {o.expect:4} -> {o.got:4} {o.case}: {o.reason[:150]}")
    agree = sum(o.agrees for o in outcomes)
    passes = [o for o in outcomes if o.expect == "pass"]
    fails = [o for o in outcomes if o.expect == "fail"]
    print(f"\n{len(outcomes)} cases run: {agree} with the suite's verdict "
          f"({sum(o.agrees for o in passes)}/{len(passes)} pass cases pass, "
          f"{sum(o.agrees for o in fails)}/{len(fails)} fail cases fail)")
    for o in outcomes:
        if not o.agrees:
            print(f"  not agreeing: {o.case}: {KNOWN_MISSES.get(o.case, 'UNEXPECTED')}")
    return 0 if all(o.agrees or o.case in KNOWN_MISSES for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

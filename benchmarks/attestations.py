"""What attestation rules cost /validate over a signature-only rule, warm and cold, over
HTTPS against the real server.

    python benchmarks/attestations.py [--requests 400] [--rounds 3] [--cold 20]

A real registry (Debian's docker-registry) holds signed images, each with a SLSA
provenance (legacy `.att`) and a vulnerability scan (bundle referrer). Two `mlgate serve`
processes run side by side: one whose image-signatures rule also requires both
attestations with CEL conditions, one with the same rule without them (the floor).
Requests alternate between them so machine noise hits both alike. Warm: the same image
over and over (verdict cached in-process); target p50(with) - p50(without) <= 0.3 ms.
Cold: each request names a freshly pushed image (tag resolution, .sig, .att and referrer
lookups, signature and attestation checks, all over loopback), on both servers.
Figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import signatures  # noqa: E402
from tests.signatures.conftest import _start  # noqa: E402
from tests.signatures.signer import Signer  # noqa: E402

SLSA1 = "https://slsa.dev/provenance/v1"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
BUILDER = "https://ci.example/builder"
REQUIREMENTS = [
    {"name": "provenance", "predicateType": SLSA1,
     "conditions": [f'predicate.runDetails.builder.id == "{BUILDER}"']},
    {"name": "scan", "predicateType": "vuln",
     "conditions": ['timestamp(predicate.metadata.scanFinishedOn) > now - duration("168h")',
                    '!predicate.scanner.result.exists(r, r.Severity == "HIGH")']}]


def publish(signer: Signer, reg: Any, name: str) -> None:
    """A signed image with a provenance (.att) and a fresh clean scan (bundle)."""
    digest = reg.pusher.image(name, "1.0")
    signer.legacy(reg.pusher, name, digest)
    signer.attest_legacy(reg.pusher, name, digest, SLSA1,
                         {"runDetails": {"builder": {"id": BUILDER}}})
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    signer.bundle(reg.pusher, name, digest, VULN, predicate={
        "scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": [{"Severity": "LOW"}]},
        "metadata": {"scanFinishedOn": finished}})


review, timed = signatures.review, signatures.timed


def config(host: str, pem: str, enabled: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "ml", "images": [f"{host}/ml/*"], "keys": [{"pem": pem}]}
    if enabled:
        rule["attestations"] = REQUIREMENTS
    return {"registries": {"insecure": [host], "deadline": "1500ms"},
            "policies": {"image-signatures": {"mode": "enforce", "params": {"rules": [rule]}}}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", type=int, default=20)
    args = parser.parse_args()
    signer = Signer()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "reg").mkdir()
        registry_run = _start(work / "reg")
        reg = next(registry_run)
        publish(signer, reg, "ml/train")
        with signatures.paired_servers(
                work, lambda on: config(reg.host, signer.public_pem, on)) as (c_on, c_off):
            body = review(f"{reg.host}/ml/train:1.0")
            for _ in range(50):  # warm up connections and caches
                timed(c_on, body)
                timed(c_off, body)
            p50_on, p50_off, p99_on, p99_off = signatures.paired_rounds(
                c_on, c_off, body, args.rounds, args.requests)
            cold, cold_off = [], []
            for _ in range(args.cold):
                name = f"ml/cold-{uuid.uuid4().hex[:8]}"
                publish(signer, reg, name)
                cold.append(timed(c_on, review(f"{reg.host}/{name}:1.0")))
                cold_off.append(timed(c_off, review(f"{reg.host}/{name}:1.0")))
        with contextlib.suppress(StopIteration):
            next(registry_run)  # stops the registry
    warm_on, warm_off = statistics.median(p50_on), statistics.median(p50_off)
    delta = warm_on - warm_off
    print(f"warm p50 /validate: with attestation rules {warm_on:.3f} ms, signature-only "
          f"{warm_off:.3f} ms, delta {delta:+.3f} ms (target <= 0.3 ms: "
          f"{'met' if delta <= 0.3 else 'MISSED'})")
    print(f"warm p99 /validate: with {statistics.median(p99_on):.3f} ms, "
          f"without {statistics.median(p99_off):.3f} ms")
    print(f"cold /validate (fresh image with 2 attestations, {args.cold} images): with "
          f"attestation rules p50 {statistics.median(cold):.2f} ms, max {max(cold):.2f} ms; "
          f"signature-only p50 {statistics.median(cold_off):.2f} ms, max "
          f"{max(cold_off):.2f} ms")
    return 0 if delta <= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Rejecting unsigned images: an OCI registry client and cosign / sigstore verification.

    settings    the `registries:` section of mlgate.yaml, credentials
    registry    async OCI distribution client (auth, manifests, blobs, referrers)
    keys        signer public keys, raw signature checks
    cosign      legacy `sha256-<hex>.sig` simple-signing signatures (cosign, skopeo)
    fulcio      legacy keyless signatures: Fulcio chain, Rekor SET, SCT, identity
    transparency  Rekor entries: SET, inclusion proof + signed checkpoint, what they record
    sct         certificate transparency: the SCT embedded in a Fulcio certificate
    timestamps  RFC 3161 timestamps against the trusted root's TSAs
    bundles     sigstore bundles: the verification core (any content) and the image rule
    intoto_entries  keyless DSSE bundles logged as Rekor intoto 0.0.2 (not sigstore-python's)
    attestations  in-toto attestations (`.att`, bundles) and CEL requirements on them
    cache       bounded TTL caches, coalescing of identical lookups
    verifier    one image against one rule: resolve, fetch, verify, cache, deadline
    metrics     Prometheus metrics of all of the above
"""

from webhook.signatures import (
    attestations,
    bundles,
    cache,
    cosign,
    fulcio,
    intoto_entries,
    keys,
    registry,
    sct,
    settings,
    timestamps,
    transparency,
)

__all__ = ["attestations", "bundles", "cache", "cosign", "fulcio", "intoto_entries", "keys",
           "registry", "sct", "settings", "timestamps", "transparency"]

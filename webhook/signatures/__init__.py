"""Rejecting unsigned images: an OCI registry client and cosign / sigstore verification.

    settings    the `registries:` section of mlgate.yaml, credentials
    registry    async OCI distribution client (auth, manifests, blobs, referrers)
    keys        signer public keys, raw signature checks
    cosign      legacy `sha256-<hex>.sig` simple-signing signatures (cosign, skopeo)
    bundles     sigstore v0.3 bundles (keyless via sigstore-python, key-based DSSE)
    cache       bounded TTL caches, coalescing of identical lookups
    verifier    one image against one rule: resolve, fetch, verify, cache, deadline
    metrics     Prometheus metrics of all of the above
"""

from webhook.signatures import bundles, cache, cosign, keys, registry, settings

__all__ = ["bundles", "cache", "cosign", "keys", "registry", "settings"]

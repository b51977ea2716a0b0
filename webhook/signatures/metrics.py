"""Prometheus metrics of image verification, on the process-wide `webhook.metrics.REGISTRY`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from webhook import metrics

VERIFICATIONS = Counter(
    "mlgate_image_verifications_total",
    "Image signature verifications by result (verified, rejected, error) and source "
    "(registry or cache).",
    ["result", "source"], registry=metrics.REGISTRY)

CACHE = Counter(
    "mlgate_image_cache_lookups_total",
    "Lookups in the image caches (digest, verified, negative) by outcome (hit, miss).",
    ["cache", "outcome"], registry=metrics.REGISTRY)

REGISTRY_LATENCY = Histogram(
    "mlgate_registry_request_seconds",
    "Latency of requests to OCI registries by operation and outcome.",
    ["operation", "outcome"], registry=metrics.REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0))

COALESCED = Counter(
    "mlgate_image_lookups_coalesced_total",
    "Lookups that joined an identical lookup already in flight.", registry=metrics.REGISTRY)

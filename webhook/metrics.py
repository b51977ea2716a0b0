"""Prometheus metrics. Every subsystem registers its metrics on `REGISTRY`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=True)

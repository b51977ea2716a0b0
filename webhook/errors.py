"""Every error mlgate raises on purpose.

    MlgateError
    ├── admission.BadReview      the request body is not an answerable AdmissionReview (4xx)
    ├── ConfigError              the configuration file or a policy's params do not validate
    │   └── PluginError          a policy module cannot be found or imported
    └── PolicyError              a policy raised or timed out while evaluating a request

A policy *rejection* is not an error: it is a `Violation` and an `allowed: false` answer.
Third-party exceptions are translated at the boundary with `raise X(...) from exc`.
"""

from __future__ import annotations


class MlgateError(Exception):
    """Base of every error mlgate raises on purpose."""


class ConfigError(MlgateError):
    """The configuration (file, environment or policy params) is invalid."""


class PluginError(ConfigError):
    """A policy module could not be found, imported or registered."""


class PolicyError(MlgateError):
    """A policy failed while evaluating a request (raised, or ran past its timeout)."""

    def __init__(self, policy: str, reason: str) -> None:
        super().__init__(f"policy {policy!r} failed: {reason}")
        self.policy = policy
        self.reason = reason

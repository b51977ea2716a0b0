"""mlgate: an admission webhook that understands ML workloads.

The public face for policy authors and embedders; everything else is internal.
"""

from webhook.errors import ConfigError, MlgateError, PluginError, PolicyError
from webhook.policy import Context, Params, Policy, Violation
from webhook.workloads import ContainerView, PodSpecView, Workload

__all__ = [
    "ConfigError",
    "ContainerView",
    "Context",
    "MlgateError",
    "Params",
    "PluginError",
    "PodSpecView",
    "Policy",
    "PolicyError",
    "Violation",
    "Workload",
]

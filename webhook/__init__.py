"""mlgate: an admission webhook that understands ML workloads.

The public face for policy authors and embedders; everything else is internal. A policy
author needs these names and, for helpers, these modules (all typed, `py.typed` ships):

    webhook.policy        MutatingPolicy[P], ValidatingPolicy[P], Params, Environment,
                          Violation, for_namespace()
    webhook.workloads     Workload, PodSpecView, ContainerView, Context, pointer()
    webhook.schema        the configuration's building blocks for params: Duration, Quantity,
                          LabelSelector, ContainerType and the other vocabularies
    webhook.accelerators  the accelerators a pod or container asks for, through extended
                          resources and DRA claims alike
    webhook.quantity      Kubernetes quantities as exact decimals
    webhook.images        image references as the runtime resolves them
    webhook.errors        the exception tree
"""

from webhook.errors import ConfigError, MlgateError, PluginError, PolicyError
from webhook.images import InvalidReference
from webhook.images import Reference as ImageReference
from webhook.policy import (
    Context,
    Environment,
    MutatingPolicy,
    Params,
    Policy,
    ValidatingPolicy,
    Violation,
)
from webhook.schema import ContainerType, Duration, LabelSelector, Quantity
from webhook.workloads import ContainerView, PodSpecView, Workload

__all__ = [
    "ConfigError",
    "ContainerType",
    "ContainerView",
    "Context",
    "Duration",
    "Environment",
    "ImageReference",
    "InvalidReference",
    "LabelSelector",
    "MlgateError",
    "MutatingPolicy",
    "Params",
    "PluginError",
    "PodSpecView",
    "Policy",
    "PolicyError",
    "Quantity",
    "ValidatingPolicy",
    "Violation",
    "Workload",
]

"""A `kubernetes` API client for the scan and the access checks, from the right place.

An explicit kubeconfig file wins; inside a pod, the service account (in-cluster config);
otherwise the user's default kubeconfig. Each client has its own `Configuration`, so
nothing global of the `kubernetes` package is touched.
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from webhook import errors


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def api_client(kubeconfig: str | None = None) -> Any:
    """An ApiClient; a `ConfigError` says which configuration could not be loaded."""
    try:
        if kubeconfig:
            return config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig)
        if in_cluster():
            configuration = client.Configuration()
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config()  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, TypeError) as exc:
        where = kubeconfig or ("the in-cluster service account" if in_cluster()
                               else "the default kubeconfig (~/.kube/config)")
        raise errors.ConfigError(f"cannot load a Kubernetes client configuration from {where}: "
                                 f"{exc}") from exc

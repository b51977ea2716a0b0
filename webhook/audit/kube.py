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


class ApiError(Exception):
    """A non-2xx answer of the API server (status and the Status message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Api:
    """Plain JSON requests through a `kubernetes` ApiClient (its auth, TLS and proxies).

    The report and event writers speak to the API server only through `request`, so their
    tests can hand them an in-memory stand-in.
    """

    def __init__(self, client_: Any, timeout: float = 30.0) -> None:
        self.client = client_
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None,
                query: list[tuple[str, Any]] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        import json

        headers = {"Accept": "application/json", "Content-Type": content_type}
        request = self.client.param_serialize(method, path, query_params=query or [],
                                              header_params=headers, body=body,
                                              auth_settings=["BearerToken"])
        response = self.client.call_api(*request, _request_timeout=self.timeout)
        data = response.read()
        try:
            parsed: dict[str, Any] = json.loads(data) if data else {}
        except ValueError:
            parsed = {"message": data.decode(errors="replace")[:500]}
        if not 200 <= response.status < 300:
            raise ApiError(response.status, str(parsed.get("message") or response.reason))
        return parsed

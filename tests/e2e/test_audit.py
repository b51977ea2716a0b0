"""The audit API with real authentication (issue 9, point 10).

mlgate runs as the chart's ServiceAccount with `audit.kubernetesAuth`: each bearer token
is checked with a TokenReview and the path with a SubjectAccessReview, both answered by
the real API server, and the permission is the chart's audit-reader ClusterRole.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.cluster import Mlgate, token

PATHS = ("/audit/report", "/audit/decisions")


def get(gate: Mlgate, path: str, bearer: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    with gate.client() as client:
        return client.get(path, headers=headers)


@pytest.fixture
def accounts(gate: Mlgate, namespace: str) -> Iterator[dict[str, str]]:
    """ServiceAccounts of this test's namespace: `reader` bound to the chart's audit-reader
    ClusterRole, `stranger` bound to nothing, `reportonly` allowed /audit/report only."""
    plane = gate.plane
    role = f"{gate.release}-{gate.namespace}-audit-reader"
    bindings = [f"{namespace}-reader", f"{namespace}-reportonly"]
    for account in ("reader", "stranger", "reportonly"):
        plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    try:
        plane.kubectl("create", "clusterrolebinding", bindings[0], f"--clusterrole={role}",
                      f"--serviceaccount={namespace}:reader")
        plane.kubectl("create", "clusterrole", bindings[1], "--verb=get",
                      "--non-resource-url=/audit/report")
        plane.kubectl("create", "clusterrolebinding", bindings[1],
                      f"--clusterrole={bindings[1]}", f"--serviceaccount={namespace}:reportonly")
        yield {account: token(plane, account, namespace)
               for account in ("reader", "stranger", "reportonly")}
    finally:
        plane.kubectl("delete", "clusterrolebinding", *bindings, "--ignore-not-found")
        plane.kubectl("delete", "clusterrole", bindings[1], "--ignore-not-found")


@pytest.mark.parametrize("path", PATHS)
def test_the_chart_s_audit_reader_role_reads_the_audit_api(gate: Mlgate, path: str,
                                                           accounts: dict[str, str]) -> None:
    response = get(gate, path, accounts["reader"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert ("totals" in body) if path == "/audit/report" else ("items" in body), body


@pytest.mark.parametrize("path", PATHS)
def test_a_service_account_without_the_role_gets_403(gate: Mlgate, namespace: str, path: str,
                                                     accounts: dict[str, str]) -> None:
    response = get(gate, path, accounts["stranger"])
    assert response.status_code == 403, response.text
    reason = response.json()["error"]
    assert f"user 'system:serviceaccount:{namespace}:stranger' may not get {path}" in reason
    assert f'nonResourceURLs ["{path}"]' in reason  # the fix


def test_permission_is_per_path(gate: Mlgate, accounts: dict[str, str]) -> None:
    assert get(gate, "/audit/report", accounts["reportonly"]).status_code == 200
    assert get(gate, "/audit/decisions", accounts["reportonly"]).status_code == 403


@pytest.mark.parametrize("path", PATHS)
def test_a_bad_token_gets_401(gate: Mlgate, path: str, accounts: dict[str, str]) -> None:
    reader = accounts["reader"]
    header, payload, _signature = reader.split(".")
    for bad in ("not-a-token", f"{header}.{payload}.forged", reader[:-8]):
        response = get(gate, path, bad)
        assert response.status_code == 401, (bad, response.text)
        assert response.headers["www-authenticate"] == 'Bearer realm="mlgate"'
        assert "the bearer token is not valid" in response.json()["error"]
    response = get(gate, path, None)
    assert response.status_code == 401 and "needs a bearer token" in response.json()["error"]


def test_a_token_for_another_audience_or_a_deleted_account_gets_401(
        gate: Mlgate, namespace: str, accounts: dict[str, str]) -> None:
    """Tokens the API server itself would not accept are not good for mlgate either."""
    plane = gate.plane
    other = plane.kubectl("create", "token", "reader", "-n", namespace,
                          "--audience=https://vault.example.com").stdout.strip()
    response = get(gate, "/audit/report", other)
    assert response.status_code == 401 and "not valid" in response.json()["error"]

    plane.kubectl("create", "serviceaccount", "leaver", "-n", namespace)
    plane.kubectl("create", "clusterrolebinding", f"{namespace}-leaver",
                  f"--clusterrole={gate.release}-{gate.namespace}-audit-reader",
                  f"--serviceaccount={namespace}:leaver")
    try:
        leaver = token(plane, "leaver", namespace)
        plane.kubectl("delete", "serviceaccount", "leaver", "-n", namespace)
        response = get(gate, "/audit/decisions", leaver)
        assert response.status_code == 401, response.text
        assert "the bearer token is not valid" in response.json()["error"]
    finally:
        plane.kubectl("delete", "clusterrolebinding", f"{namespace}-leaver",
                      "--ignore-not-found")


def test_metrics_stay_public(gate: Mlgate) -> None:
    response = get(gate, "/metrics", None)
    assert response.status_code == 200 and "mlgate_" in response.text

"""Namespaces the chart exempts, and what the API server does while mlgate is down.

The exemptions live in the webhook configurations the chart renders (a namespaceSelector),
so the API server itself must keep those requests away from mlgate: the test counts what
mlgate journaled, not what it answered. The outage tests stop the local `mlgate serve`;
the session release's webhooks are pointed at a stopped server only inside a test, which
starts it again in `finally`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import cluster, controlplane
from tests.e2e.cluster import Mlgate, get_json
from tests.e2e.test_apply import LIMITED_GPU, NO_LIMITS, apply, pod, stored

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OPT_OUT = "mlgate.io/ignore"
_suffix = itertools.count()


def unique(name: str) -> str:
    """Pod names in shared namespaces (kube-system, the release's) must not collide."""
    return f"{name}-{int(time.time())}-{next(_suffix)}"


def exempt_namespaces(gate: Mlgate, namespace: str) -> list[str]:
    """kube-system, the release namespace and an opted-out one, each with its `default`
    ServiceAccount (no controller-manager makes it)."""
    opted_out = gate.plane.namespace(f"{namespace}-optout", labels={OPT_OUT: "true"})
    for name in ("kube-system", gate.namespace):
        gate.plane.kubectl("create", "serviceaccount", "default", "-n", name, check=False)
    return ["kube-system", gate.namespace, opted_out]


def tolerated(gate: Mlgate, namespace: str, name: str) -> bool:
    return GPU_TOLERATION in stored(gate, namespace, "pod", name)["spec"].get("tolerations", [])


def key(record: dict[str, Any]) -> tuple[str, str]:
    return record["uid"], record["phase"]


def wait_journaled(gate: Mlgate, namespace: str, count: int,
                   timeout: float = 15) -> list[dict[str, Any]]:
    """The journal, once it holds `count` decisions for `namespace` (it is written in
    batches, first in first out: what came before is in by then)."""
    deadline = time.monotonic() + timeout
    while True:
        records = gate.journaled()
        if sum(r["namespace"] == namespace for r in records) >= count:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} decisions for {namespace} not journaled in "
                                 f"{timeout} s")
        time.sleep(0.2)


def admission_requests(gate: Mlgate) -> float:
    """mlgate_admission_requests_total summed over every label, from /metrics."""
    with gate.client() as client:
        text = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlgate_admission_requests_total{"))


# -- point 8: exemptions ------------------------------------------------------------
def test_exempt_namespaces_are_never_sent_to_mlgate(gate: Mlgate, namespace: str) -> None:
    exempt = exempt_namespaces(gate, namespace)
    before = {key(r) for r in gate.journaled()}
    requests_before = admission_requests(gate)
    names = {}
    for ns in exempt:
        # mlgate would deny this pod (no limits): stored means mlgate never saw it.
        names[ns] = unique("nolimits")
        apply(gate, ns, pod(names[ns], NO_LIMITS), check=True)
        assert not tolerated(gate, ns, names[ns])
    apply(gate, namespace, pod("gpu", LIMITED_GPU), check=True)
    assert tolerated(gate, namespace, "gpu")

    records = [r for r in wait_journaled(gate, namespace, 2) if key(r) not in before]
    assert {r["namespace"] for r in records} == {namespace}, records
    assert sorted(r["phase"] for r in records) == ["mutate", "validate"]
    assert admission_requests(gate) - requests_before == 2
    for ns in exempt:
        gate.plane.kubectl("delete", "pod", names[ns], "-n", ns, "--wait=false")


def test_a_normal_namespace_with_the_label_set_to_anything_is_exempt(
        gate: Mlgate, namespace: str) -> None:
    """The chart's selector is `DoesNotExist` on the key: any value opts out, even "false"."""
    opted = gate.plane.namespace(f"{namespace}-false", labels={OPT_OUT: "false"})
    before = admission_requests(gate)
    apply(gate, opted, pod("nolimits", NO_LIMITS), check=True)
    assert admission_requests(gate) == before


# -- point 9: mlgate stopped --------------------------------------------------------
def webhook_versions(gate: Mlgate) -> list[str]:
    name = cluster.webhook_configuration(gate)
    return [get_json(gate.plane, kind, name)["metadata"]["resourceVersion"]
            for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")]


def test_mlgate_stopped_fail_policy_refuses_and_exempt_namespaces_still_work(
        gate: Mlgate, namespace: str) -> None:
    exempt = exempt_namespaces(gate, namespace)
    versions = webhook_versions(gate)
    gate.stop()
    try:
        refused = apply(gate, namespace, pod("gpu", LIMITED_GPU))
        assert refused.returncode == 1
        # Both webhooks are Fail; the mutating one is called first, so it is named:
        # Error from server (InternalError): error when creating "STDIN": Internal error
        # occurred: failed calling webhook "mutate.mlgate.io": failed to call webhook: Post
        # "https://mlgate.mlgate-system.svc:<port>/mutate?timeout=5s": dial tcp
        # 127.0.0.1:<port>: connect: connection refused
        err = refused.stderr
        assert "Error from server (InternalError)" in err, err
        assert 'Internal error occurred: failed calling webhook "mutate.mlgate.io"' in err, err
        assert (f'Post "https://{gate.release}.{gate.namespace}.svc:{gate.port}/mutate'
                f'?timeout=5s"') in err, err
        assert "connect: connection refused" in err, err
        missing = gate.plane.kubectl("get", "pod", "gpu", "-n", namespace, check=False)
        assert "NotFound" in missing.stderr
        for ns in exempt:
            name = unique("outage")
            apply(gate, ns, pod(name, NO_LIMITS), check=True)
            gate.plane.kubectl("delete", "pod", name, "-n", ns, "--wait=false")
    finally:
        gate.start()
    # Started again: the same request goes through, and nothing in the cluster changed.
    apply(gate, namespace, pod("gpu", LIMITED_GPU), check=True)
    assert tolerated(gate, namespace, "gpu")
    assert webhook_versions(gate) == versions


def webhooks_ca(plane: controlplane.ControlPlane, name: str) -> list[str]:
    return [get_json(plane, kind, name)["webhooks"][0]["clientConfig"]["caBundle"]
            for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")]


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    """A plane of its own: a release whose webhooks answer nothing must intercept no one
    else's requests."""
    with controlplane.running(tmp_path_factory.mktemp("outage-plane")) as plane:
        yield plane


def test_the_mutating_webhook_follows_its_own_failure_policy(
        isolated: controlplane.ControlPlane, tmp_path: Path) -> None:
    """mutating Ignore + validating Fail, mlgate down: only the validating call refuses;
    with both Ignore the pod is stored, and without mlgate's mutation."""
    gate = cluster.install(isolated, tmp_path, "--set", "webhooks.mutating.failurePolicy=Ignore",
                           namespace="mlgate-ignore")
    try:
        namespace = isolated.namespace("outage-ignore")
        refused = apply(gate, namespace, pod("gpu", LIMITED_GPU))
        assert refused.returncode == 1
        assert 'failed calling webhook "validate.mlgate.io"' in refused.stderr, refused.stderr
        assert "mutate.mlgate.io" not in refused.stderr
        assert "/validate?timeout=5s" in refused.stderr

        name = cluster.webhook_configuration(gate)
        bundle = webhooks_ca(isolated, name)
        cluster.upgrade(gate, "--set", "webhooks.validating.failurePolicy=Ignore")
        assert webhooks_ca(isolated, name) == bundle  # the chart's lookup keeps its CA
        assert get_json(isolated, "validatingwebhookconfiguration", name)["webhooks"][0][
            "failurePolicy"] == "Ignore"
        # Fail open: stored as sent, neither mutated nor checked (a pod mlgate would deny).
        apply(gate, namespace, pod("gpu", LIMITED_GPU), check=True)
        apply(gate, namespace, pod("nolimits", NO_LIMITS), check=True)
        assert not tolerated(gate, namespace, "gpu")

        gate.start()  # back: the same webhooks reach it again
        apply(gate, namespace, pod("gpu2", LIMITED_GPU), check=True)
        assert tolerated(gate, namespace, "gpu2")
        assert apply(gate, namespace, pod("nolimits2", NO_LIMITS)).returncode == 1
    finally:
        cluster.uninstall(gate)

"""`mlgate certs inject-ca` and `certs.inject_ca`, with the real `kubernetes` client,
against the webhook configurations of a real kube-apiserver (tests/certs/conftest.py).

tests/e2e/test_certificates.py runs inject-ca on the chart's own configurations (replace,
--keep-existing, a missing name) and rotates under load; these are the rest of its cases.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certs.conftest import MUTATING, VALIDATING, Webhooks
from tests.e2e.cluster import token, token_kubeconfig
from tests.kube import Sent, Spy
from webhook import certs


def mlgate(webhooks: Webhooks, *args: str,
           kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webhook.cli", *args, "--kubeconfig",
                           str(kubeconfig or webhooks.plane.kubeconfig)],
                          capture_output=True, text=True, timeout=60)


def ca_file(directory: Path, days: int = 365) -> tuple[Path, bytes]:
    bundle = certs.generate("mlgate", "mlgate-system", ca_days=days)
    path = directory / f"ca-{len(list(directory.glob('ca-*')))}.crt"
    path.write_bytes(bundle.ca_pem)
    return path, bundle.ca_pem


def without_bundles(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with what a caBundle write may change taken out."""
    out = copy.deepcopy(obj)
    for key in ("resourceVersion", "managedFields", "generation"):
        out["metadata"].pop(key, None)
    for hook in out["webhooks"]:
        hook["clientConfig"].pop("caBundle", None)
    return out


def test_inject_ca_patches_every_webhook(webhooks: Webhooks, tmp_path: Path) -> None:
    path, ca_pem = ca_file(tmp_path)
    before = {kind: webhooks.get(kind) for kind in (MUTATING, VALIDATING)}
    result = mlgate(webhooks, "certs", "inject-ca", "--ca-file", str(path),
                    "--mutating", webhooks.name, "--validating", webhooks.name)
    assert result.returncode == 0, result.stderr
    assert f"MutatingWebhookConfiguration {webhooks.name}: patched" in result.stdout
    assert f"ValidatingWebhookConfiguration {webhooks.name}: patched" in result.stdout
    encoded = base64.b64encode(ca_pem).decode()
    assert webhooks.bundles(MUTATING) == [encoded]
    assert webhooks.bundles(VALIDATING) == [encoded, encoded]
    for kind in (MUTATING, VALIDATING):  # the stored objects changed in their caBundles only
        assert without_bundles(webhooks.get(kind)) == without_bundles(before[kind])
    versions = {kind: webhooks.version(kind) for kind in (MUTATING, VALIDATING)}

    again = mlgate(webhooks, "certs", "inject-ca", "--ca-file", str(path),
                   "--mutating", webhooks.name, "--validating", webhooks.name)
    assert again.returncode == 0 and again.stdout.count("already current") == 2, again.stdout
    assert {kind: webhooks.version(kind) for kind in versions} == versions, (
        "an unchanged bundle must not be written again")


@pytest.mark.parametrize(("args", "message"), [
    (["--mutating", "nope"], "MutatingWebhookConfiguration nope not found"),
    # a webhook's name where the configuration's belongs: the hint shows the chart's naming
    (["--mutating", "mutate.mlgate.io"], "e.g. mlgate-mlgate-system for release mlgate"),
    ([], "name at least one --mutating or --validating"),
])
def test_inject_ca_errors_name_the_problem(webhooks: Webhooks, tmp_path: Path,
                                           args: list[str], message: str) -> None:
    path, _ = ca_file(tmp_path)
    result = mlgate(webhooks, "certs", "inject-ca", "--ca-file", str(path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_inject_ca_refused_without_rights(webhooks: Webhooks, tmp_path: Path) -> None:
    """A token the API server does not know (401), and a ServiceAccount without the RBAC
    (403): both name what the account needs, and nothing is written."""
    plane = webhooks.plane
    namespace = plane.namespace("inject-ca-rights")
    plane.kubectl("create", "serviceaccount", "no-rights", "-n", namespace, check=False)
    path, _ = ca_file(tmp_path)
    for bearer, status in (("wrong", 401), (token(plane, "no-rights", namespace), 403)):
        kubeconfig = token_kubeconfig(plane, tmp_path / f"kubeconfig-{status}", bearer)
        result = mlgate(webhooks, "certs", "inject-ca", "--ca-file", str(path),
                        "--validating", webhooks.name, kubeconfig=kubeconfig)
        assert result.returncode == 2
        assert f"refused (HTTP {status})" in result.stderr, result.stderr
        assert "get and patch" in result.stderr
    assert webhooks.bundles(VALIDATING) == [None, None]


def test_inject_ca_rejects_a_file_without_a_certificate(webhooks: Webhooks,
                                                        tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate\n")
    version = webhooks.version(MUTATING)
    result = mlgate(webhooks, "certs", "inject-ca", "--ca-file", str(bogus),
                    "--mutating", webhooks.name)
    assert result.returncode == 2 and "holds no PEM certificate" in result.stderr
    assert webhooks.version(MUTATING) == version
    assert webhooks.bundles(MUTATING) == [None]


def test_merge_survives_a_concurrent_writer(webhooks: Webhooks, tmp_path: Path) -> None:
    """Two replicas rotate at once: the other one writes between our read and our patch.
    The patch names the resourceVersion it read, so the real API server answers 409; the
    loser reads again and both CAs stay."""
    _, other_pem = ca_file(tmp_path)
    _, own_pem = ca_file(tmp_path)

    def other_replica_writes(sent: Sent) -> None:
        if sent.method == "PATCH" and not spy.sent("PATCH"):
            webhooks.plane.kubectl("patch", MUTATING, webhooks.name, "--type=strategic",
                                   "-p", json.dumps({"webhooks": [{
                                       "name": "mutate.mlgate.io", "clientConfig": {
                                           "caBundle": base64.b64encode(other_pem).decode()}}]}))

    spy = Spy(before=other_replica_writes)
    with spy.wrap(certs.api_client(str(webhooks.plane.kubeconfig))) as client:
        changed = certs.inject_ca(client, own_pem, mutating=[webhooks.name], merge=True)
    assert changed == [f"MutatingWebhookConfiguration/{webhooks.name}"]
    patches = spy.sent("PATCH")
    assert [p.status for p in patches] == [409, 200]
    for patch in patches:
        assert patch.path.endswith(f"/mutatingwebhookconfigurations/{webhooks.name}")
        assert patch.content_type == "application/strategic-merge-patch+json"
        assert patch.body["metadata"]["resourceVersion"]  # what makes the write conditional
        assert set(patch.body) == {"metadata", "webhooks"}  # touches nothing else
    (bundle,) = webhooks.bundles(MUTATING)
    assert bundle is not None and base64.b64decode(bundle) == own_pem + other_pem


def test_merged_bundle_drops_expired_and_caps_the_count() -> None:
    now = dt.datetime.now(dt.UTC)
    expired = certs.generate(ca_days=1, now=now - dt.timedelta(days=3)).ca_pem
    valid = [certs.generate(now=now - dt.timedelta(minutes=i)).ca_pem for i in range(20)]
    own = certs.generate().ca_pem
    merged = certs.merged_bundle(expired + b"".join(valid), own, now)
    kept = x509.load_pem_x509_certificates(merged)
    assert len(kept) == certs.MAX_BUNDLE_CAS
    assert kept[0].public_bytes(serialization.Encoding.PEM) == own
    pems = {c.public_bytes(serialization.Encoding.PEM) for c in kept}
    assert expired not in pems
    assert set(valid[:certs.MAX_BUNDLE_CAS - 1]) <= pems  # the newest others are kept

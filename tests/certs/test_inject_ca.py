"""`mlgate certs inject-ca` and `certs.inject_ca`, with the real `kubernetes` client,
against the stand-in API server (tests/certs/apiserver.py)."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certs import apiserver
from webhook import certs

MUTATING, VALIDATING = "mutatingwebhookconfigurations", "validatingwebhookconfigurations"
NAME = "gate-mlgate-mlgate-system"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[apiserver.StandInApiServer]:
    with apiserver.running(tmp_path) as server:
        server.add(MUTATING, NAME, ["mutate.mlgate.io"])
        server.add(VALIDATING, NAME, ["validate.mlgate.io", "validate-extra.mlgate.io"])
        yield server


def mlgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webhook.cli", *args], capture_output=True,
                          text=True, timeout=60)


def ca_file(directory: Path, days: int = 365) -> tuple[Path, bytes]:
    bundle = certs.generate("mlgate", "mlgate-system", ca_days=days)
    path = directory / f"ca-{len(list(directory.glob('ca-*')))}.crt"
    path.write_bytes(bundle.ca_pem)
    return path, bundle.ca_pem


def test_inject_ca_patches_every_webhook(api: apiserver.StandInApiServer, tmp_path: Path) -> None:
    path, ca_pem = ca_file(tmp_path)
    kubeconfig = api.kubeconfig(tmp_path)
    result = mlgate("certs", "inject-ca", "--ca-file", str(path), "--mutating", NAME,
                    "--validating", NAME, "--kubeconfig", str(kubeconfig))
    assert result.returncode == 0, result.stderr
    assert f"MutatingWebhookConfiguration {NAME}: patched" in result.stdout
    encoded = base64.b64encode(ca_pem).decode()
    assert api.bundles(MUTATING, NAME) == [encoded]
    assert api.bundles(VALIDATING, NAME) == [encoded, encoded]
    patches = api.patches()
    assert [p.path for p in patches] == [f"{apiserver.PREFIX}{MUTATING}/{NAME}",
                                         f"{apiserver.PREFIX}{VALIDATING}/{NAME}"]
    for patch in patches:
        assert patch.content_type == "application/strategic-merge-patch+json"
        assert patch.body["metadata"]["resourceVersion"]  # conditional write
        assert set(patch.body) == {"metadata", "webhooks"}  # touches nothing else
    # the service reference the chart rendered is untouched
    hook = api.objects[(VALIDATING, NAME)]["webhooks"][1]
    assert hook["clientConfig"]["service"]["path"] == "/validate"

    again = mlgate("certs", "inject-ca", "--ca-file", str(path), "--mutating", NAME,
                   "--validating", NAME, "--kubeconfig", str(kubeconfig))
    assert again.returncode == 0 and "already current" in again.stdout
    assert len(api.patches()) == 2, "an unchanged bundle must not be written again"


def test_inject_ca_replaces_unless_keep_existing(api: apiserver.StandInApiServer,
                                                 tmp_path: Path) -> None:
    kubeconfig = str(api.kubeconfig(tmp_path))
    first, first_pem = ca_file(tmp_path)
    second, second_pem = ca_file(tmp_path)
    for path in (first, second):
        assert mlgate("certs", "inject-ca", "--ca-file", str(path), "--mutating", NAME,
                      "--kubeconfig", kubeconfig).returncode == 0
    assert api.bundles(MUTATING, NAME) == [base64.b64encode(second_pem).decode()]
    assert mlgate("certs", "inject-ca", "--ca-file", str(first), "--mutating", NAME,
                  "--keep-existing", "--kubeconfig", kubeconfig).returncode == 0
    (bundle,) = api.bundles(MUTATING, NAME)
    assert base64.b64decode(bundle) == first_pem + second_pem


@pytest.mark.parametrize(("args", "message"), [
    (["--mutating", "nope"], "MutatingWebhookConfiguration nope not found"),
    # a webhook's name where the configuration's belongs: the hint shows the chart's naming
    (["--mutating", "mutate.mlgate.io"], "e.g. mlgate-mlgate-system for release mlgate"),
    ([], "name at least one --mutating or --validating"),
])
def test_inject_ca_errors_name_the_problem(api: apiserver.StandInApiServer, tmp_path: Path,
                                           args: list[str], message: str) -> None:
    path, _ = ca_file(tmp_path)
    result = mlgate("certs", "inject-ca", "--ca-file", str(path), *args, "--kubeconfig",
                    str(api.kubeconfig(tmp_path)))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_inject_ca_refused_without_rights(api: apiserver.StandInApiServer,
                                          tmp_path: Path) -> None:
    path, _ = ca_file(tmp_path)
    result = mlgate("certs", "inject-ca", "--ca-file", str(path), "--validating", NAME,
                    "--kubeconfig", str(api.kubeconfig(tmp_path, token="wrong")))
    assert result.returncode == 2
    assert "refused (HTTP 401)" in result.stderr and "get and patch" in result.stderr
    assert api.bundles(VALIDATING, NAME) == [None, None]


def test_inject_ca_rejects_a_file_without_a_certificate(api: apiserver.StandInApiServer,
                                                        tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate\n")
    result = mlgate("certs", "inject-ca", "--ca-file", str(bogus), "--mutating", NAME,
                    "--kubeconfig", str(api.kubeconfig(tmp_path)))
    assert result.returncode == 2 and "holds no PEM certificate" in result.stderr
    assert api.patches() == []


def test_merge_survives_a_concurrent_writer(api: apiserver.StandInApiServer,
                                            tmp_path: Path) -> None:
    """Two replicas rotate at once: the 409 makes the loser re-read; both CAs stay."""
    from kubernetes import config as kube_config

    _, other_pem = ca_file(tmp_path)
    _, own_pem = ca_file(tmp_path)
    raced = []

    def other_replica_writes(plural: str, name: str) -> None:
        if raced:
            return
        raced.append(name)
        obj = api.objects[(plural, name)]
        patched = apiserver.strategic_merge(obj, {"webhooks": [{
            "name": "mutate.mlgate.io",
            "clientConfig": {"caBundle": base64.b64encode(other_pem).decode()}}]})
        api.write(plural, name, patched)

    api.before_patch = other_replica_writes
    client = kube_config.new_client_from_config(config_file=str(api.kubeconfig(tmp_path)))
    with client:
        changed = certs.inject_ca(client, own_pem, mutating=[NAME], merge=True)
    assert changed == [f"MutatingWebhookConfiguration/{NAME}"]
    assert [p.status for p in api.patches()] == [409, 200]
    (bundle,) = api.bundles(MUTATING, NAME)
    assert base64.b64decode(bundle) == own_pem + other_pem


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

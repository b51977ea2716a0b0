"""`mlgate serve --self-signed`: generate, publish the CA, rotate before expiry.

The webhook configurations are in a real kube-apiserver (tests/certs/conftest.py), reached
by the real `kubernetes` client; the server is the real `mlgate serve` over TLS.
tests/e2e/test_chart_modes.py::test_self_managed_mode runs the chart's self-managed mode.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.certs import peer
from tests.certs.conftest import MUTATING, VALIDATING, Webhooks
from tests.kube import Sent, Spy
from webhook import certs, selfsigned, server

SERVICE, NAMESPACE = "gate-mlgate", "mlgate-system"


def manager(webhooks: Webhooks, tmp_path: Path, spy: Spy | None = None,
            **kwargs: object) -> selfsigned.Manager:
    kubeconfig = str(webhooks.plane.kubeconfig)
    spy = spy or Spy()
    return selfsigned.Manager(tmp_path / "certs", SERVICE, NAMESPACE, [webhooks.name],
                              [webhooks.name],
                              api_factory=lambda: spy.wrap(certs.api_client(kubeconfig)),
                              **kwargs)  # type: ignore[arg-type]


def bundle_cas(webhooks: Webhooks, kind: str) -> list[x509.Certificate]:
    """The CAs of a configuration's caBundle (the same in each of its webhooks)."""
    encoded, *others = webhooks.bundles(kind)
    assert encoded is not None and all(other == encoded for other in others)
    return x509.load_pem_x509_certificates(base64.b64decode(encoded))


def served(m: selfsigned.Manager) -> x509.Certificate:
    return x509.load_pem_x509_certificate(m.pem_file.read_bytes())


def test_first_start_generates_and_publishes(webhooks: Webhooks, tmp_path: Path) -> None:
    spy = Spy()
    m = manager(webhooks, tmp_path, spy)
    assert m.ensure() is True
    cert = served(m)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(certs.dns_names(SERVICE, NAMESPACE)) <= set(
        names.get_values_for_type(x509.DNSName))
    for plural in (MUTATING, VALIDATING):
        (ca,) = bundle_cas(webhooks, plural)
        cert.verify_directly_issued_by(ca)
    assert (m.pem_file.stat().st_mode & 0o777) == 0o600  # the private key is in it
    # a second start with a good certificate changes nothing
    versions = [webhooks.version(kind) for kind in (MUTATING, VALIDATING)]
    again = manager(webhooks, tmp_path, spy)
    assert again.ensure() is False
    assert [p.status for p in spy.sent("PATCH")] == [200, 200]
    assert [webhooks.version(kind) for kind in (MUTATING, VALIDATING)] == versions


def test_rotation_publishes_the_new_ca_before_serving_it(webhooks: Webhooks,
                                                         tmp_path: Path) -> None:
    spy = Spy()
    m = manager(webhooks, tmp_path, spy, validity_days=90, renew_fraction=0.33)
    m.ensure()
    old = served(m)
    assert m.ensure(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=50)) is False
    seen_while_patching: list[int] = []

    def note_served(sent: Sent) -> None:
        if sent.method == "PATCH":
            seen_while_patching.append(served(m).serial_number)

    spy.before = note_served
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=61)  # 29 of 90 days left
    assert m.renewal_due(later) is not None
    assert m.ensure(now=later) is True
    new = served(m)
    assert new.serial_number != old.serial_number
    assert seen_while_patching == [old.serial_number, old.serial_number]
    for plural in (MUTATING, VALIDATING):
        cas = bundle_cas(webhooks, plural)
        new.verify_directly_issued_by(cas[0])  # the new CA first ...
        old.verify_directly_issued_by(cas[1])  # ... the previous one kept until it expires


def test_a_certificate_for_another_service_is_replaced(webhooks: Webhooks,
                                                       tmp_path: Path) -> None:
    m = manager(webhooks, tmp_path)
    m.ensure()
    renamed = manager(webhooks, tmp_path)
    renamed.service = "other"
    assert "does not name the Service other" in (renamed.renewal_due() or "")


def test_an_unreachable_api_still_lets_the_server_start(tmp_path: Path) -> None:
    m = selfsigned.Manager(tmp_path / "certs", SERVICE, NAMESPACE, ["gate-mlgate-system"], [],
                           api_factory=lambda: certs.api_client(str(tmp_path / "missing")))
    with pytest.raises(certs.InjectionError, match="cannot configure the Kubernetes client"):
        m.ensure()
    assert served(m) is not None and m.published is False
    m.ensure_or_log()  # logs and returns: the loop retries


def test_renew_fraction_is_checked() -> None:
    with pytest.raises(ValueError, match="--renew-fraction"):
        selfsigned.Manager(Path("/tmp/x"), SERVICE, NAMESPACE, renew_fraction=1.5)


@pytest.mark.integration
def test_serve_self_signed_rotates_and_the_api_server_trusts_it(
        webhooks: Webhooks, tmp_path: Path) -> None:
    """The real server: the CA it publishes verifies what it serves, before and after."""
    port = server.free_port()
    log = tmp_path / "server.log"
    # a 1-day certificate renewed when less than 99.99% is left: every check rotates
    args = [sys.executable, "-m", "webhook.cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--self-signed", "--service-name", SERVICE,
            "--certs-dir", str(tmp_path / "certs"), "--mutating", webhooks.name,
            "--validating", webhooks.name,
            "--cert-validity-days", "1", "--renew-fraction", "0.9999",
            "--renew-check-interval", "0.5", "--kubeconfig", str(webhooks.plane.kubeconfig),
            "--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "MLGATE_NAMESPACE": NAMESPACE}
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=tmp_path)
    try:
        serials = set()
        deadline = time.monotonic() + 60
        while len(serials) < 3:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no rotation seen:\n{log.read_text()}"
            cas = webhooks.bundles(VALIDATING)[0]
            if cas is not None:
                try:
                    cert = peer.certificate(port, base64.b64decode(cas),
                                            f"{SERVICE}.{NAMESPACE}.svc")
                    serials.add(cert.serial_number)
                except (ConnectionRefusedError, ssl.SSLCertVerificationError):
                    # not up yet, or a rotation landed between reading the bundle and the
                    # handshake; a certificate the bundle never trusts fails the deadline
                    pass
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # compared once the server has stopped: a rotation between the two reads is no mismatch
    (mutating,) = webhooks.bundles(MUTATING)
    assert webhooks.bundles(VALIDATING) == [mutating, mutating]
    assert "self-signed certificates:" not in log.read_text()  # no failed write, no retry


def test_serve_self_signed_needs_the_service_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLGATE_SERVICE_NAME"}
    result = subprocess.run([sys.executable, "-m", "webhook.cli", "serve", "--self-signed",
                             "--certs-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "--self-signed needs --service-name" in result.stderr

"""`mlgate certs generate`: a CA and a serving certificate for the Service's DNS names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509

from webhook import certs


def test_generate_writes_ca_and_serving_cert_for_the_service(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    result = subprocess.run([sys.executable, "-m", "webhook.cli", "certs", "generate",
                             "--service", "gate", "--namespace", "ml-system", "--out", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ca = x509.load_pem_x509_certificate((out / certs.CA_FILE).read_bytes())
    served = x509.load_pem_x509_certificate((out / certs.CERT_FILE).read_bytes())
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {
        "gate", "gate.ml-system", "gate.ml-system.svc", "gate.ml-system.svc.cluster.local"}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for secret in (certs.KEY_FILE, certs.CA_KEY_FILE):
        assert ((out / secret).stat().st_mode & 0o777) == 0o600, secret


def test_issue_keeps_the_ca_and_never_outlives_it() -> None:
    first = certs.generate(ca_days=10)
    second = certs.issue(first.ca_pem, first.ca_key_pem, days=365)
    ca = x509.load_pem_x509_certificate(first.ca_pem)
    cert = x509.load_pem_x509_certificate(second.cert_pem)
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc
    assert second.cert_pem != first.cert_pem

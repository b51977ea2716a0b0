"""A development CA and a serving certificate for the webhook Service.

The API server verifies the webhook's certificate against the `caBundle` of the webhook
configuration and the Service DNS name, so the serving certificate carries the names
`S`, `S.N`, `S.N.svc` and `S.N.svc.cluster.local` (plus localhost for local use).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE, CERT_FILE, KEY_FILE, CA_KEY_FILE = "ca.crt", "tls.crt", "tls.key", "ca.key"


@dataclass(frozen=True)
class Bundle:
    ca_pem: bytes
    ca_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def dns_names(service: str, namespace: str) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local"]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate(service: str = "mlgate", namespace: str = "mlgate-system", days: int = 365,
             ca_days: int = 3650, extra_names: list[str] | None = None,
             now: dt.datetime | None = None) -> Bundle:
    """A new CA and a serving certificate signed by it (ECDSA P-256)."""
    now = now or dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mlgate CA ({namespace})")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(service, namespace) + ["localhost"] + list(extra_names or [])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                    f"{service}.{namespace}.svc")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Bundle(ca.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key),
                  cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write(bundle: Bundle, directory: str | Path) -> dict[str, Path]:
    """Write the bundle; keys are readable by the owner only. Files are replaced atomically."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data, mode in ((CA_FILE, bundle.ca_pem, 0o644), (CA_KEY_FILE, bundle.ca_key_pem, 0o600),
                             (KEY_FILE, bundle.key_pem, 0o600), (CERT_FILE, bundle.cert_pem, 0o644)):
        path = out / name
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        paths[name] = path
    return paths


def ensure(directory: str | Path, service: str = "mlgate",
           namespace: str = "mlgate-system") -> tuple[Path, Path]:
    """Development certificates in `directory`, generated when absent: (cert, key)."""
    out = Path(directory)
    cert, key = out / CERT_FILE, out / KEY_FILE
    if not (cert.exists() and key.exists()):
        write(generate(service, namespace), out)
    return cert, key


def not_after(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc

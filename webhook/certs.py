"""A CA and a serving certificate for the webhook Service, and caBundle injection.

The API server verifies the webhook's certificate against the `caBundle` of the webhook
configuration and the Service DNS name, so the serving certificate carries the names
`S`, `S.N`, `S.N.svc` and `S.N.svc.cluster.local` (plus localhost for local use).
`inject_ca` writes a CA into the caBundle of named webhook configurations through the API
(`mlgate certs inject-ca`, and `mlgate serve --self-signed` after each rotation).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook import errors

log = logging.getLogger("mlgate.certs")

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


def _new_ca(namespace: str, days: int, now: dt.datetime,
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mlgate CA ({namespace})")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, ca_key


def _serving(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, service: str,
             namespace: str, days: int, extra_names: list[str] | None,
             now: dt.datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(service, namespace) + ["localhost"] + list(extra_names or [])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                    f"{service}.{namespace}.svc")]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate(service: str = "mlgate", namespace: str = "mlgate-system", days: int = 365,
             ca_days: int = 3650, extra_names: list[str] | None = None,
             now: dt.datetime | None = None) -> Bundle:
    """A new CA and a serving certificate signed by it (ECDSA P-256)."""
    now = now or dt.datetime.now(dt.UTC)
    ca, ca_key = _new_ca(namespace, ca_days, now)
    cert_pem, key_pem = _serving(ca, ca_key, service, namespace, days, extra_names, now)
    return Bundle(ca.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key), cert_pem,
                  key_pem)


def issue(ca_pem: bytes, ca_key_pem: bytes, service: str = "mlgate",
          namespace: str = "mlgate-system", days: int = 365,
          extra_names: list[str] | None = None, now: dt.datetime | None = None) -> Bundle:
    """A new serving certificate from an existing CA (rotation without a caBundle change)."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key (as `certs generate` writes)")
    cert_pem, key_pem = _serving(ca, ca_key, service, namespace, days, extra_names,
                                 now or dt.datetime.now(dt.UTC))
    return Bundle(ca_pem, ca_key_pem, cert_pem, key_pem)


def write(bundle: Bundle, directory: str | Path) -> dict[str, Path]:
    """Write the bundle; keys are readable by the owner only. Files are replaced atomically."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    # The key before the certificate: a reload between the two keeps the old pair.
    for name, data, mode in ((CA_FILE, bundle.ca_pem, 0o644),
                             (CA_KEY_FILE, bundle.ca_key_pem, 0o600),
                             (KEY_FILE, bundle.key_pem, 0o600),
                             (CERT_FILE, bundle.cert_pem, 0o644)):
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


# -- caBundle injection ----------------------------------------------------------------
MUTATING, VALIDATING = "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"
MAX_BUNDLE_CAS = 16  # with --self-signed every replica adds its CA; old ones age out


class InjectionError(errors.MlgateError):
    """The caBundle could not be written into a webhook configuration through the API."""


def split_pem(bundle: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; unparsable data yields none."""
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return []


def merged_bundle(current: bytes, ca_pem: bytes, now: dt.datetime | None = None) -> bytes:
    """`ca_pem` first, then the still-valid CAs of `current` (other replicas, the previous CA).

    Keeping the previous CA lets connections made before a rotation finish; dropping
    expired ones and capping the count keeps the bundle from growing without bound.
    """
    now = now or dt.datetime.now(dt.UTC)
    own = split_pem(ca_pem)
    seen = {c.fingerprint(hashes.SHA256()) for c in own}
    others = []
    for cert in split_pem(current):
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint in seen or cert.not_valid_after_utc <= now:
            continue
        seen.add(fingerprint)
        others.append(cert)
    others.sort(key=lambda c: c.not_valid_before_utc, reverse=True)
    kept = own + others[:max(MAX_BUNDLE_CAS - len(own), 0)]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in kept)


def api_client(kubeconfig: str | None = None) -> Any:
    """A real `kubernetes` ApiClient: the given kubeconfig, in-cluster, or $KUBECONFIG."""
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        if kubeconfig:
            return kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
            return client.ApiClient(configuration)
        return kube_config.new_client_from_config()  # type: ignore[no-untyped-call]
    except (kube_config.ConfigException, OSError) as exc:
        raise InjectionError(f"cannot configure the Kubernetes client: {exc} (pass "
                             "--kubeconfig, set KUBECONFIG, or run in a pod)") from exc


def _explain(exc: Exception, kind: str, name: str) -> InjectionError:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        if exc.status == 404:
            return InjectionError(f"{kind} {name} not found: name the configuration, not a "
                                  f"webhook in it (`kubectl get {kind.lower()}s` lists them; "
                                  "the chart names both <fullname>-<namespace>, e.g. "
                                  "mlgate-mlgate-system for release mlgate in mlgate-system)")
        if exc.status in (401, 403):
            return InjectionError(f"{kind} {name}: the API server refused (HTTP {exc.status}); "
                                  f"the service account needs get and patch on "
                                  f"{kind.lower()}s named {name}")
        return InjectionError(f"{kind} {name}: the API server answered HTTP {exc.status}: "
                              f"{exc.reason}")
    return InjectionError(f"{kind} {name}: cannot reach the API server: {exc}")


def _inject_one(api: Any, kind: str, name: str, ca_pem: bytes, merge: bool,
                attempts: int) -> bool:
    """Patch every webhook of one configuration; True when something changed."""
    from kubernetes.client.exceptions import ApiException

    read: Callable[..., Any]
    patch: Callable[..., Any]
    if kind == MUTATING:
        read, patch = (api.read_mutating_webhook_configuration,
                       api.patch_mutating_webhook_configuration)
    else:
        read, patch = (api.read_validating_webhook_configuration,
                       api.patch_validating_webhook_configuration)
    for attempt in range(attempts):
        try:
            current = read(name)
        except Exception as exc:
            raise _explain(exc, kind, name) from exc
        hooks = []
        for hook in current.webhooks or []:
            existing = hook.client_config.ca_bundle if hook.client_config else None
            if isinstance(existing, str):
                existing = base64.b64decode(existing)
            wanted = merged_bundle(existing or b"", ca_pem) if merge else ca_pem
            if wanted != existing:
                hooks.append({"name": hook.name, "clientConfig": {
                    "caBundle": base64.b64encode(wanted).decode()}})
        if not hooks:
            return False
        # Strategic merge: webhooks merge by `name`; resourceVersion makes it conditional,
        # so two replicas rotating at once cannot drop each other's CA (409 -> read again).
        body = {"metadata": {"resourceVersion": current.metadata.resource_version},
                "webhooks": hooks}
        try:
            patch(name, body, _content_type="application/strategic-merge-patch+json")
            log.info("wrote caBundle into %s %s (%d webhooks)", kind, name, len(hooks))
            return True
        except ApiException as exc:
            if exc.status == 409 and attempt + 1 < attempts:
                continue
            raise _explain(exc, kind, name) from exc
        except Exception as exc:
            raise _explain(exc, kind, name) from exc
    raise InjectionError(f"{kind} {name}: still conflicting after {attempts} attempts")


def inject_ca(api_client_: Any, ca_pem: bytes, mutating: Sequence[str] = (),
              validating: Sequence[str] = (), merge: bool = False,
              attempts: int = 5) -> list[str]:
    """Write `ca_pem` into the caBundle of every webhook of the named configurations.

    `merge` keeps the other still-valid CAs already there (self-managed replicas); without
    it the bundle is replaced. Returns "Kind/name" of the configurations that changed.
    """
    if not split_pem(ca_pem):
        raise InjectionError("the CA file holds no PEM certificate")
    from kubernetes import client

    api = client.AdmissionregistrationV1Api(api_client_)
    changed = []
    for kind, names in ((MUTATING, mutating), (VALIDATING, validating)):
        for name in names:
            if _inject_one(api, kind, name, ca_pem, merge, attempts):
                changed.append(f"{kind}/{name}")
    return changed

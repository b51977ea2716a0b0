"""Self-managed certificates: `mlgate serve --self-signed`.

For clusters without cert-manager and without a chart-made CA. The server makes its own
CA and serving certificate for the Service name, writes the CA into the caBundle of its
webhook configurations through the API, and renews both before they expire:

1. a new CA and serving certificate are generated in memory;
2. the new CA is *added* to the caBundle (the other replicas' CAs and the previous one
   stay until they expire), so the API server trusts the new certificate before it is
   served;
3. key and certificate are written together into one file (`tls.pem`) with one atomic
   rename, which the reloading TLS context picks up for every new handshake.

Replicas and worker processes share the work safely: renewal runs under a file lock in the
certificate directory, and the caBundle patch is conditional on the resourceVersion.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from webhook import certs

log = logging.getLogger("mlgate.selfsigned")

PEM_FILE = "tls.pem"  # private key and certificate in one file: one rename swaps both
LOCK_FILE = ".renew.lock"


@dataclass
class Manager:
    """Keeps a valid self-signed serving certificate in `directory` and its CA published."""

    directory: Path
    service: str
    namespace: str
    mutating: Sequence[str] = ()
    validating: Sequence[str] = ()
    validity_days: int = 90
    renew_fraction: float = 0.33
    api_factory: Callable[[], Any] = field(default=certs.api_client)
    published: bool = False
    renewals: int = 0

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if not 0 < self.renew_fraction < 1:
            raise ValueError("--renew-fraction must be between 0 and 1 (e.g. 0.33)")
        if self.validity_days < 1:
            raise ValueError("--cert-validity-days must be at least 1")

    @property
    def pem_file(self) -> Path:
        return self.directory / PEM_FILE

    @property
    def ca_file(self) -> Path:
        return self.directory / certs.CA_FILE

    # -- deciding -----------------------------------------------------------------
    def _current(self) -> x509.Certificate | None:
        try:
            return x509.load_pem_x509_certificate(self.pem_file.read_bytes())
        except (OSError, ValueError):
            return None

    def renewal_due(self, now: dt.datetime | None = None) -> str | None:
        """Why the certificate must be renewed now, or None while it is good."""
        now = now or dt.datetime.now(dt.UTC)
        cert = self._current()
        if cert is None or not self.ca_file.exists():
            return "no certificate yet"
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        wanted = set(certs.dns_names(self.service, self.namespace))
        if not wanted <= set(names.get_values_for_type(x509.DNSName)):
            return f"the certificate does not name the Service {self.service}.{self.namespace}"
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        left = cert.not_valid_after_utc - now
        if left <= lifetime * self.renew_fraction:
            return f"{left.days} days left of {lifetime.days}"
        return None

    # -- acting -------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _publish(self, ca_pem: bytes) -> None:
        if not (self.mutating or self.validating):
            return
        client = self.api_factory()
        try:
            certs.inject_ca(client, ca_pem, self.mutating, self.validating, merge=True)
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()

    def _write(self, bundle: certs.Bundle) -> None:
        tmp = self.directory / f".{PEM_FILE}.tmp"
        with open(tmp, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(bundle.key_pem + bundle.cert_pem)
        ca_tmp = self.directory / f".{certs.CA_FILE}.tmp"
        ca_tmp.write_bytes(bundle.ca_pem)
        os.replace(ca_tmp, self.ca_file)
        os.replace(tmp, self.pem_file)

    def ensure(self, now: dt.datetime | None = None) -> bool:
        """Renew when due (publish the CA first, then swap the files). True when renewed.

        Also publishes the current CA once per process: a `helm upgrade` or a new replica
        must find it in the caBundle. A failed publish raises `certs.InjectionError`; a
        certificate that was generated is still written, so the server can start.
        """
        with self._locked():
            reason = self.renewal_due(now)
            if reason is None:
                if not self.published:
                    self._publish(self.ca_file.read_bytes())
                    self.published = True
                return False
            log.info("generating a self-signed certificate for %s.%s (%s)", self.service,
                     self.namespace, reason)
            bundle = certs.generate(self.service, self.namespace, days=self.validity_days,
                                    ca_days=self.validity_days, now=now)
            try:
                self._publish(bundle.ca_pem)
                self.published = True
            except certs.InjectionError:
                if self._current() is not None:
                    raise  # keep serving the old certificate the API server still trusts
                self._write(bundle)  # nothing to serve yet: start, and publish on retry
                self.published = False
                raise
            self._write(bundle)
            self.renewals += 1
            return True

    def ensure_or_log(self) -> None:
        try:
            self.ensure()
        except certs.InjectionError as exc:
            log.error("self-signed certificates: %s; retrying", exc)
        except OSError as exc:
            log.error("self-signed certificates: cannot write %s: %s; retrying",
                      self.directory, exc.strerror)

    async def run(self, interval: float = 60.0) -> None:
        """Check every `interval` seconds, off the event loop."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.ensure_or_log)

    def renewal(self, interval: float = 60.0) -> Renewal:
        """The renewal loop as a service of the app (`create_app(services=...)`)."""
        return Renewal(self, interval)


class Renewal:
    """Runs `Manager.run` for as long as the server does."""

    def __init__(self, manager: Manager, interval: float) -> None:
        self.manager = manager
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.manager.run(self.interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


# -- command line ---------------------------------------------------------------------
def add_arguments(serve: Any) -> None:
    """The `mlgate serve` flags of this mode."""
    group = serve.add_argument_group("self-managed certificates (--self-signed)")
    group.add_argument("--self-signed", action="store_true",
                       help="generate and rotate a certificate for the Service and patch the "
                            "caBundle of the webhook configurations through the API")
    group.add_argument("--service-name", default=os.environ.get("MLGATE_SERVICE_NAME"),
                       help="the webhook Service (certificate names S, S.N, S.N.svc, ...)")
    group.add_argument("--mutating", action="append", default=[], metavar="NAME",
                       help="MutatingWebhookConfiguration whose caBundle to keep (repeatable)")
    group.add_argument("--validating", action="append", default=[], metavar="NAME",
                       help="ValidatingWebhookConfiguration whose caBundle to keep (repeatable)")
    group.add_argument("--cert-validity-days", type=int, default=90)
    group.add_argument("--renew-fraction", type=float, default=0.33,
                       help="renew when less than this fraction of the validity is left")
    group.add_argument("--renew-check-interval", type=float, default=60.0,
                       help="seconds between expiry checks")
    group.add_argument("--kubeconfig", default=None,
                       help="kubeconfig for the API (default: in-cluster, then $KUBECONFIG)")


def from_args(args: Any) -> Manager:
    """A manager for `serve --self-signed`, with a certificate on disk when it returns.

    Raises ValueError naming the flag when the flags do not fit together.
    """
    from webhook import config

    if not args.service_name:
        raise ValueError("--self-signed needs --service-name (the webhook Service's name; "
                         "or set MLGATE_SERVICE_NAME)")
    if args.tls_cert or args.tls_key:
        raise ValueError("--self-signed makes its own certificate: drop --tls-cert/--tls-key")
    kubeconfig = args.kubeconfig
    manager = Manager(
        directory=Path(args.certs_dir), service=args.service_name,
        namespace=config.own_namespace(), mutating=list(args.mutating),
        validating=list(args.validating), validity_days=args.cert_validity_days,
        renew_fraction=args.renew_fraction,
        api_factory=lambda: certs.api_client(kubeconfig))
    manager.ensure_or_log()
    if manager._current() is None:
        raise ValueError(f"--self-signed: no certificate could be written to {manager.directory}")
    return manager

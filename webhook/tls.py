"""The server's TLS context, reloaded when the certificate files change.

cert-manager, the chart and `--self-signed` all rotate certificates by replacing files.
Loading the new chain into the same `SSLContext` makes every new handshake use it while
established connections carry on: no restart, no failed request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509

log = logging.getLogger("mlgate.tls")


def certificate_expiry(cert_file: str | Path) -> float:
    """notAfter of the first certificate in a PEM file, in UNIX seconds (0 if unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return 0.0
    return cert.not_valid_after_utc.timestamp()


def _stamp(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)  # follows symlinks, as Kubernetes secret volumes swap them
    return stat.st_mtime_ns, stat.st_ino, stat.st_size


class ReloadingContext:
    """An `SSLContext` (TLS 1.2+) that re-reads its certificate and key on change."""

    def __init__(self, cert_file: str | Path, key_file: str | Path,
                 client_ca_file: str | Path | None = None) -> None:
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        if client_ca_file is not None:
            self.context.load_verify_locations(str(client_ca_file))
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.reloads = 0
        self._stamps = self._load()

    def _load(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        stamps = (_stamp(self.cert_file), _stamp(self.key_file))
        # Try the pair on a scratch context first: a failed load_cert_chain on the live one
        # (new certificate, old key) leaves it with no usable key and fails every handshake.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(self.cert_file),
                                                                 str(self.key_file))
        self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return stamps

    def reload_if_changed(self) -> bool:
        """Load the files again when they changed. A broken pair keeps the old one."""
        try:
            stamps = (_stamp(self.cert_file), _stamp(self.key_file))
        except OSError as exc:
            log.warning("cannot stat certificate files: %s", exc)
            return False
        if stamps == self._stamps:
            return False
        try:
            self._stamps = self._load()
        except (OSError, ssl.SSLError) as exc:
            # Cert and key are often written one after the other: try again next tick.
            log.warning("certificate files changed but do not load yet (%s); keeping the "
                        "previous certificate", exc)
            return False
        self.reloads += 1
        log.info("reloaded TLS certificate from %s", self.cert_file)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

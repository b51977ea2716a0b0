"""The reloading TLS context keeps serving through every order of file replacement."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509

from tests.certs import peer
from webhook import certs, tls


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _serve_one(context: ssl.SSLContext) -> tuple[int, threading.Thread, list[str]]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[str] = []

    def accept() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError) as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return port, thread, errors


def handshake(context: ssl.SSLContext, ca_pem: bytes) -> x509.Certificate:
    port, thread, errors = _serve_one(context)
    try:
        return peer.certificate(port, ca_pem, "mlgate.mlgate-system.svc")
    finally:
        thread.join(10)
        assert not errors, errors


def test_certificate_written_before_its_key_keeps_the_old_pair(tmp_path: Path) -> None:
    """cert new + key old (a reload tick between two writes) must not break handshakes."""
    first = certs.generate()
    paths = certs.write(first, tmp_path)
    context = tls.ReloadingContext(paths[certs.CERT_FILE], paths[certs.KEY_FILE])
    second = certs.issue(first.ca_pem, first.ca_key_pem)

    _replace(paths[certs.CERT_FILE], second.cert_pem)
    assert context.reload_if_changed() is False  # half a pair: not taken
    served = handshake(context.context, first.ca_pem)
    assert served == x509.load_pem_x509_certificate(first.cert_pem)

    _replace(paths[certs.KEY_FILE], second.key_pem)
    assert context.reload_if_changed() is True
    served = handshake(context.context, first.ca_pem)
    assert served == x509.load_pem_x509_certificate(second.cert_pem)


def test_key_written_before_its_certificate_keeps_the_old_pair(tmp_path: Path) -> None:
    first = certs.generate()
    paths = certs.write(first, tmp_path)
    context = tls.ReloadingContext(paths[certs.CERT_FILE], paths[certs.KEY_FILE])
    second = certs.issue(first.ca_pem, first.ca_key_pem)
    _replace(paths[certs.KEY_FILE], second.key_pem)
    assert context.reload_if_changed() is False
    assert handshake(context.context, first.ca_pem) == x509.load_pem_x509_certificate(
        first.cert_pem)


def test_one_file_holding_key_and_certificate(tmp_path: Path) -> None:
    """The layout of --self-signed: one rename swaps both."""
    first = certs.generate()
    pem = tmp_path / "tls.pem"
    pem.write_bytes(first.key_pem + first.cert_pem)
    context = tls.ReloadingContext(pem, pem)
    second = certs.issue(first.ca_pem, first.ca_key_pem)
    _replace(pem, second.key_pem + second.cert_pem)
    assert context.reload_if_changed() is True
    assert handshake(context.context, first.ca_pem) == x509.load_pem_x509_certificate(
        second.cert_pem)

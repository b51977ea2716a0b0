"""What a new TLS connection sees: the server's certificate, verified like the API server."""

from __future__ import annotations

import socket
import ssl

from cryptography import x509


def certificate(port: int, ca_pem: bytes, server_name: str) -> x509.Certificate:
    """Handshake with 127.0.0.1:port trusting only `ca_pem`, checking `server_name`."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)

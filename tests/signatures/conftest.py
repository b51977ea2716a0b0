"""A real OCI registry (Debian's docker-registry, distribution 2.8) on loopback, with and
without token auth, and stand-ins for a registry that is down or too slow.

The token-auth variant uses distribution's own `auth.token` setup: a small token service
in this file checks basic credentials and issues ES256 JWTs whose `x5c` certificate is the
registry's `rootcertbundle`, the way Docker Hub's auth.docker.io works.
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.signatures.signer import Pusher, Signer
from webhook import engine, server

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SERVICE = "mlgate-test-registry"
ISSUER = "mlgate-test-token-issuer"
USER, PASSWORD = "ci", "s3cret"


@dataclass
class Registry:
    host: str  # 127.0.0.1:port
    base: str
    pusher: Pusher
    storage: Path
    credentials: Path | None = None  # dockerconfigjson for the auth variant


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Issues registry tokens to the user with the right password (basic auth)."""

    def __init__(self, workdir: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.bundle = workdir / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.port = server.free_port()
        self.requests = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                service.requests += 1
                query = parse_qs(urlparse(self.path).query)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(query.get("scope", [""])[0]),
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def token(self, scope: str) -> str:
        access = []
        if scope.startswith("repository:"):
            _, name, actions = scope.split(":")
            access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [
            base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 60, "iat": now, "jti": str(uuid.uuid4()), "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(),
                                                  ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _start(workdir: Path, auth: TokenService | None = None) -> Iterator[Registry]:
    if not Path(BINARY).exists():
        pytest.fail("docker-registry is not installed; run scripts/install-tools")
    port = server.free_port()
    storage = workdir / "storage"
    storage.mkdir()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "mlgate-tests"},
    }
    if auth is not None:
        config["auth"] = {"token": {"realm": auth.realm, "service": SERVICE, "issuer": ISSUER,
                                    "rootcertbundle": str(auth.bundle)}}
    config_file = workdir / "registry.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen([BINARY, "serve", str(config_file)], stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # bounded: 30 s
            if process.poll() is not None:
                raise RuntimeError("docker-registry exited:\n" +
                                   (workdir / "registry.log").read_text(errors="replace"))
            try:
                if httpx.get(f"{base}/v2/", timeout=1).status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("docker-registry did not answer within 30 s")
        token = None
        credentials = None
        if auth is not None:
            def token(repository: str) -> str:
                return auth.token(f"repository:{repository}:pull,push")

            credentials = workdir / "dockerconfig.json"
            credentials.write_text(json.dumps({"auths": {f"127.0.0.1:{port}": {
                "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
        pusher = Pusher(base, f"127.0.0.1:{port}", token)
        with pusher.client:
            yield Registry(f"127.0.0.1:{port}", base, pusher, storage, credentials)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real, anonymous distribution 2.8 registry over plain HTTP on loopback."""
    yield from _start(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The same registry requiring a bearer token from a token service (basic creds)."""
    workdir = tmp_path_factory.mktemp("auth-registry")
    tokens = TokenService(workdir)
    try:
        yield from _start(workdir, tokens)
    finally:
        tokens.stop()


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="session")
def other_signer() -> Signer:
    return Signer()


@pytest.fixture
def down_registry() -> str:
    """A loopback port nobody listens on: connections are refused."""
    return f"127.0.0.1:{server.free_port()}"


@pytest.fixture
def slow_registry() -> Iterator[str]:
    """Accepts connections and never answers (a registry stuck behind a dead proxy)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.fixture
async def engines() -> AsyncIterator[list[engine.Engine]]:
    """Engines a test builds; their policies' registry verifiers are closed afterwards."""
    built: list[engine.Engine] = []
    yield built
    for eng in built:
        for active in eng.active:
            verifier = getattr(active.policy, "verifier", None)
            if verifier is not None:
                await verifier.aclose()

"""A real Kubernetes control plane on loopback: etcd and kube-apiserver 1.37, nothing else.

Built from their Go modules by scripts/build-controlplane into .tools/bin. There is no
kubelet, scheduler or controller-manager: objects are stored and admitted, pods never run.
What the missing controller-manager means for tests: no `default` ServiceAccount appears in
a new namespace (`ControlPlane.namespace` makes one, or the ServiceAccount admission plugin
refuses Pods), namespaces stay Terminating after a delete, nothing is garbage-collected.

Start one by hand (for trying mlgate against a real API server):

    python -m tests.e2e.controlplane            # prints `export KUBECONFIG=...`; Ctrl-C stops
"""

from __future__ import annotations

import ctypes
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
BINARIES = ("etcd", "kube-apiserver", "kubectl")
PR_SET_PDEATHSIG = 1  # prctl(2)
MISSING = ("the control plane is not built: run scripts/build-controlplane (Go >= 1.26; the "
           "first build takes 10-20 minutes), or scripts/test, which builds it")


def binary(name: str) -> Path:
    """A control-plane binary from .tools/bin (the pinned build), else from PATH."""
    local = TOOLS / name
    if local.exists():
        return local
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name}: {MISSING}")
    return Path(found)


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, however it dies
    (a killed pytest never leaves an etcd or kube-apiserver behind). Linux only."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False,
          sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = x509.oid.ExtendedKeyUsageOID
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([usage.SERVER_AUTH if server else usage.CLIENT_AUTH]),
            critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _name(common: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def write_pki(directory: Path) -> None:
    """CA, API server serving cert (127.0.0.1, localhost), admin client cert, SA keys."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("mlgate-e2e-ca")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"), x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _cert(_name("kube-apiserver"), server_key, ca_name, ca_key, server=True, sans=sans)
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _cert(_name("admin", "system:masters"), admin_key, ca_name, ca_key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "apiserver.crt": server.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": _pem(server_key),
        "admin.crt": admin.public_bytes(serialization.Encoding.PEM),
        "admin.key": _pem(admin_key),
        "sa.key": _pem(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o600)


def kubeconfig(server: str, pki: Path) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: e2e
  context: {{cluster: e2e, user: admin}}
current-context: e2e
"""


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver; `kubectl(...)` runs the real kubectl against it."""

    workdir: Path
    server: str
    kubeconfig: Path
    pki: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment for kubectl, helm and the kubernetes client."""
        path = f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path,
                "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
                "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
                "HELM_DATA_HOME": str(self.workdir / "helm" / "data")}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(binary("kubectl")), *args], input=input, text=True,
                                capture_output=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stderr}{result.stdout}")
        return result

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        """A fresh namespace with the `default` ServiceAccount a controller-manager would add."""
        label_lines = "".join(f"\n    {k}: {v!r}" for k, v in (labels or {}).items())
        self.kubectl("apply", "-f", "-", input=(
            f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
            + (f"  labels:{label_lines}\n" if labels else "")
            + f"---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n"
            f"  namespace: {name}\n"))
        return name

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def _get(url: str, pki: Path, timeout: float = 2) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)


def _wait_ready(plane: ControlPlane, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        for process, log in zip(plane.processes, ("etcd.log", "kube-apiserver.log"),
                                strict=True):
            if process.poll() is not None:
                tail = (plane.workdir / log).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{log[:-4]} exited with {process.returncode}:\n{tail}")
        status, last = _get(f"{plane.server}/readyz", plane.pki)
        if status == 200:
            return
        time.sleep(0.3)
    raise RuntimeError(f"kube-apiserver not ready after {deadline_s:.0f} s: {last[-2000:]}")


@contextmanager
def running(workdir: Path | None = None, extra_args: tuple[str, ...] = (),
            ready_timeout: float = 120) -> Iterator[ControlPlane]:
    """Start etcd and kube-apiserver on free loopback ports; stop them and remove the data."""
    for name in BINARIES:
        binary(name)
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="mlgate-e2e-")) if workdir is None else workdir
    pki = root / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    write_pki(pki)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    config = root / "kubeconfig"
    config.write_text(kubeconfig(server, pki))
    plane = ControlPlane(workdir=root, server=server, kubeconfig=config, pki=pki)
    etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    try:
        with open(root / "etcd.log", "wb") as log:
            plane.processes.append(subprocess.Popen([
                str(binary("etcd")), "--name", "e2e", "--data-dir", str(root / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"e2e={peer_url}", "--log-level", "warn",
                "--unsafe-no-fsync",  # test data only: nothing survives the session anyway
            ], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent))
        with open(root / "kube-apiserver.log", "wb") as log:
            plane.processes.append(subprocess.Popen([
                str(binary("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=RBAC",
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--profiling=false",
                *extra_args,
            ], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent))
        _wait_ready(plane, ready_timeout)
        yield plane
    finally:
        plane.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill` stops etcd and kube-apiserver too
    with running() as plane:
        print(f"export KUBECONFIG={plane.kubeconfig}")
        print(f"# API server {plane.server}; logs in {plane.workdir}; Ctrl-C stops it",
              flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`mlgate certs inject-ca` against the real webhook configurations, and a serving
certificate rotated while the API server keeps calling mlgate.

A control plane of its own: the rotation changes the release's CA, and a deliberately
untrusted certificate makes its webhooks fail for a moment.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.e2e import cluster, controlplane
from tests.e2e.cluster import Mlgate, get_json
from tests.e2e.test_apply import LIMITED_GPU, apply, pod
from webhook import certs

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
KINDS = ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    with controlplane.running(tmp_path_factory.mktemp("certs-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def release(isolated: controlplane.ControlPlane,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mlgate]:
    gate = cluster.install(isolated, tmp_path_factory.mktemp("certs-release"),
                           namespace="mlgate-certs")
    gate.start()
    try:
        yield gate
    finally:
        cluster.uninstall(gate)


def inject_ca(gate: Mlgate, ca_file: Path, *args: str,
              name: str | None = None) -> subprocess.CompletedProcess[str]:
    name = name or cluster.webhook_configuration(gate)
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", "certs", "inject-ca", "--ca-file", str(ca_file),
         "--mutating", name, "--validating", name, *args],
        text=True, capture_output=True, env=gate.plane.env, timeout=60)


def stored_bundles(gate: Mlgate) -> list[list[bytes]]:
    """The CAs of each stored webhook's caBundle, as SHA-256 fingerprints."""
    name = cluster.webhook_configuration(gate)
    return [[c.fingerprint(hashes.SHA256()) for c in certs.split_pem(
                base64.b64decode(hook["clientConfig"]["caBundle"]))]
            for kind in KINDS for hook in get_json(gate.plane, kind, name)["webhooks"]]


def fingerprint(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256())


def served(gate: Mlgate) -> bytes:
    """Fingerprint of the certificate mlgate serves on a new connection."""
    return fingerprint(ssl.get_server_certificate(("127.0.0.1", gate.port)).encode())


def new_bundle(gate: Mlgate, directory: Path) -> tuple[certs.Bundle, Path]:
    bundle = certs.generate(gate.release, gate.namespace, days=30)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(bundle.ca_pem)
    return bundle, directory / "ca.crt"


def swap_files(gate: Mlgate, bundle: certs.Bundle, timeout: float = 15) -> None:
    """Replace the serving files as a Secret volume update would; wait for the reload."""
    before = gate.output().count("reloaded TLS certificate")
    certs.write(bundle, gate.tls_dir)
    deadline = time.monotonic() + timeout
    while gate.output().count("reloaded TLS certificate") <= before:
        assert time.monotonic() < deadline, gate.output()[-2000:]
        time.sleep(0.1)
    assert served(gate) == fingerprint(bundle.cert_pem)


def test_inject_ca_patches_the_real_webhook_configurations(release: Mlgate,
                                                           tmp_path: Path) -> None:
    chart_ca = fingerprint((release.tls_dir / "ca.crt").read_bytes())
    assert stored_bundles(release) == [[chart_ca], [chart_ca]]
    same = inject_ca(release, release.tls_dir / "ca.crt")
    assert same.returncode == 0, same.stderr
    assert same.stdout.count("already current") == 2

    other, other_file = new_bundle(release, tmp_path)
    added = inject_ca(release, other_file, "--keep-existing")
    assert added.returncode == 0, added.stderr
    assert added.stdout.count("patched") == 2
    assert stored_bundles(release) == [[fingerprint(other.ca_pem), chart_ca]] * 2

    replaced = inject_ca(release, release.tls_dir / "ca.crt")  # back to the chart's CA only
    assert replaced.returncode == 0 and replaced.stdout.count("patched") == 2
    assert stored_bundles(release) == [[chart_ca], [chart_ca]]

    missing = inject_ca(release, other_file, name="nope")
    assert missing.returncode == 2
    assert "MutatingWebhookConfiguration nope not found" in missing.stderr
    # The hint's naming is the chart's: <fullname>-<namespace>.
    assert "<fullname>-<namespace>" in missing.stderr
    listed = get_json(release.plane, "mutatingwebhookconfigurations",
                      f"-l=app.kubernetes.io/instance={release.release}")["items"]
    assert [c["metadata"]["name"] for c in listed] == [f"mlgate-{release.namespace}"]


class Creator(threading.Thread):
    """Creates GPU pods through the API server, one after the other, until stopped."""

    def __init__(self, gate: Mlgate, namespace: str) -> None:
        super().__init__(daemon=True)
        self.gate, self.namespace = gate, namespace
        self.results: list[tuple[str, int, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            name = f"rot-{len(self.results)}"
            result = apply(self.gate, self.namespace, pod(name, LIMITED_GPU))
            self.results.append((name, result.returncode, result.stderr))

    def created_since(self, mark: int, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.results) < mark + count:
            assert time.monotonic() < deadline and self.is_alive(), self.results[-3:]
            time.sleep(0.05)


def test_rotation_to_a_new_ca_fails_no_request(release: Mlgate, tmp_path: Path) -> None:
    """Inject the merged bundle, then swap the files, then drop the old CA: every create
    during all of it is admitted (and mutated) by mlgate."""
    namespace = release.plane.namespace("rotation")
    old_ca = fingerprint((release.tls_dir / "ca.crt").read_bytes())
    bundle, ca_file = new_bundle(release, tmp_path)
    creator = Creator(release, namespace)
    creator.start()
    try:
        creator.created_since(0, 3)
        added = inject_ca(release, ca_file, "--keep-existing")
        assert added.returncode == 0, added.stderr
        assert stored_bundles(release) == [[fingerprint(bundle.ca_pem), old_ca]] * 2
        creator.created_since(len(creator.results), 3)
        swap_files(release, bundle)
        creator.created_since(len(creator.results), 3)
        # The old CA leaves the bundle: the API server makes new connections, which only
        # succeed if the new certificate is what mlgate serves.
        dropped = inject_ca(release, ca_file)
        assert dropped.returncode == 0, dropped.stderr
        assert stored_bundles(release) == [[fingerprint(bundle.ca_pem)]] * 2
        creator.created_since(len(creator.results), 5)
    finally:
        creator.halt.set()
        creator.join(60)
    failed = [r for r in creator.results if r[1] != 0]
    assert not failed, failed
    assert len(creator.results) >= 14
    pods = get_json(release.plane, "pods", "-n", namespace)["items"]
    assert len(pods) == len(creator.results)
    assert all(GPU_TOLERATION in p["spec"]["tolerations"] for p in pods)


def test_a_certificate_the_bundle_does_not_trust_is_refused(release: Mlgate,
                                                            tmp_path: Path) -> None:
    """The control of the rotation test: files swapped before the CA is injected fail
    every new connection (mlgate restarted, so the API server cannot reuse one)."""
    namespace = release.plane.namespace("untrusted")
    trusted = {path: path.read_bytes() for path in release.tls_dir.iterdir()}
    untrusted, _ = new_bundle(release, tmp_path)
    release.stop()
    certs.write(untrusted, release.tls_dir)
    try:
        release.start()
        refused = apply(release, namespace, pod("gpu", LIMITED_GPU))
        assert refused.returncode == 1
        assert 'failed calling webhook "mutate.mlgate.io"' in refused.stderr
        assert "x509: certificate signed by unknown authority" in refused.stderr, refused.stderr
    finally:
        release.stop()
        for path, data in trusted.items():
            path.write_bytes(data)
        release.start()
    apply(release, namespace, pod("gpu", LIMITED_GPU), check=True)


def test_a_new_ca_bundle_takes_effect_on_the_next_request(release: Mlgate,
                                                          tmp_path: Path) -> None:
    """The API server connects anew as soon as the caBundle changes: a bundle without the
    served certificate's CA fails the very next request. So a CA must be in the bundle
    before it serves, and a renewal that changes the CA (a self-signed certificate, as a
    selfSigned Issuer makes) fails admission until the pods' files catch up; the chart's
    cert-manager mode issues from a CA of its own for this reason."""
    namespace = release.plane.namespace("bundle-switch")
    apply(release, namespace, pod("before", LIMITED_GPU), check=True)  # a warm connection
    other, other_file = new_bundle(release, tmp_path)
    try:
        assert inject_ca(release, other_file).returncode == 0
        refused = apply(release, namespace, pod("after", LIMITED_GPU))
        assert refused.returncode == 1
        assert "x509: certificate signed by unknown authority" in refused.stderr, refused.stderr
    finally:
        restored = inject_ca(release, release.tls_dir / "ca.crt")
        assert restored.returncode == 0, restored.stderr
    apply(release, namespace, pod("after", LIMITED_GPU), check=True)

"""mlgate installed by its chart into the real API server, and served by a local process.

The chart is installed as a user would (`helm install`); the Deployment is stored but never
runs (no kubelet). Instead `mlgate serve` runs here with the certificate and configuration
the chart made, and the API server reaches it through the chart's own webhook
configurations: the test swaps the chart's ClusterIP Service for a Service of type
ExternalName `localhost` with the same name and port. The API server then dials
`localhost:<service port>` and still checks the certificate for `<svc>.<ns>.svc`, so the
serving certificate and the caBundle are exactly what the chart made.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.controlplane import ROOT, ControlPlane, binary, free_port

CHART = ROOT / "charts" / "mlgate"
RELEASE = "mlgate"
NAMESPACE = "mlgate-system"


def helm(plane: ControlPlane, *args: str, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(binary("helm")), *args], text=True, capture_output=True,
                            env=plane.env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stderr}{result.stdout}")
    return result


def external_name_service(plane: ControlPlane, name: str, namespace: str, port: int) -> None:
    """Put an ExternalName `localhost` Service in place of the chart's ClusterIP Service."""
    plane.kubectl("delete", "service", name, "-n", namespace, "--ignore-not-found")
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ExternalName", "externalName": "localhost",
                 "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}}))


def get_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


@dataclass
class Mlgate:
    """A local `mlgate serve` answering the API server for one chart release."""

    plane: ControlPlane
    workdir: Path
    port: int
    namespace: str = NAMESPACE
    release: str = RELEASE
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    self_signed: bool = False  # `serve --self-signed` makes its own files in tls_dir

    @property
    def config_file(self) -> Path:
        return self.workdir / "config" / "mlgate.yaml"

    @property
    def log(self) -> Path:
        return self.workdir / "mlgate.log"

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def take_chart_files(self) -> None:
        """The serving certificate from the chart's Secret, the config from its ConfigMap."""
        secret = get_json(self.plane, "secret", f"{self.release}-tls", "-n", self.namespace)
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        for key in ("ca.crt", "tls.crt", "tls.key"):
            if key in secret["data"]:
                (self.tls_dir / key).write_bytes(base64.b64decode(secret["data"][key]))
        configmap = get_json(self.plane, "configmap", self.release, "-n", self.namespace)
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(configmap["data"]["mlgate.yaml"])

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        context.check_hostname = False  # the certificate names the Service, not 127.0.0.1
        return httpx.Client(base_url=self.url, verify=context, timeout=10)

    def start(self, ready_timeout: float = 30) -> None:
        env = {**self.plane.env, "MLGATE_NAMESPACE": self.namespace}
        tls_args = (["--certs-dir", str(self.tls_dir)] if self.self_signed else
                    ["--tls-cert", str(self.tls_dir / "tls.crt"),
                     "--tls-key", str(self.tls_dir / "tls.key")])
        args = [sys.executable, "-m", "webhook.cli", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), *tls_args, "--config", str(self.config_file),
                "--data-dir", str(self.workdir / "data"), *self.extra_args]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlgate serve exited with {self.process.returncode}:\n"
                                   f"{self.output()[-4000:]}")
            with contextlib.suppress(httpx.TransportError, OSError), self.client() as client:
                if client.get("/readyz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlgate serve not ready in {ready_timeout} s:\n"
                                   f"{self.output()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def configure(self, config: dict[str, Any], timeout: float = 15) -> None:
        """Write a new configuration and wait until the server has reloaded it."""
        before = self.output().count("configuration reloaded")
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.config_file)
        deadline = time.monotonic() + timeout
        while self.output().count("configuration reloaded") <= before:
            if "configuration rejected" in self.output()[-2000:]:
                raise AssertionError(f"mlgate rejected the configuration:\n"
                                     f"{self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"mlgate did not reload in {timeout} s:\n"
                                     f"{self.output()[-2000:]}")
            time.sleep(0.1)

    def journaled(self, **filters: str) -> list[dict[str, Any]]:
        """Every decision of the journal (filtered as `/audit/decisions` filters: namespace,
        kind, policy, user, decision), as the audit API pages them out."""
        records: list[dict[str, Any]] = []
        cursor = ""
        with self.client() as client:
            while True:
                params = {**filters, "cursor": cursor} if cursor else dict(filters)
                response = client.get("/audit/decisions", params=params,
                                      headers=self.audit_headers())
                response.raise_for_status()
                page = response.json()
                records += page["items"]
                cursor = page.get("next") or ""
                if not cursor:
                    return records

    def audit_headers(self) -> dict[str, str]:
        token = (self.workdir / "audit-token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}


def install(plane: ControlPlane, workdir: Path, *helm_args: str,
            release: str = RELEASE, namespace: str = NAMESPACE,
            take_files: bool = True) -> Mlgate:
    """`helm install` the chart and route its Service to a local port (`Mlgate.start()`
    then serves it). `take_files=False` where the chart makes no Secret (cert-manager and
    self-managed modes)."""
    port = free_port()
    helm(plane, "install", release, str(CHART), "--namespace", namespace, "--create-namespace",
         "--set", f"service.port={port}", *helm_args)
    external_name_service(plane, release, namespace, port)
    gate = Mlgate(plane=plane, workdir=workdir, port=port, namespace=namespace, release=release)
    if take_files:
        gate.take_chart_files()
    return gate


def upgrade(gate: Mlgate, *helm_args: str) -> None:
    """`helm upgrade --reuse-values`, then the Service swapped again. Helm 4 applies
    server-side: the swapped Service's type and port conflict with kubectl's apply, so
    the upgrade forces them back to the chart's and the swap is redone."""
    helm(gate.plane, "upgrade", gate.release, str(CHART), "--namespace", gate.namespace,
         "--reuse-values", "--force-conflicts", *helm_args)
    external_name_service(gate.plane, gate.release, gate.namespace, gate.port)


def uninstall(gate: Mlgate) -> None:
    """Stop the server and remove the release (its cluster-wide webhook configurations)."""
    gate.stop()
    helm(gate.plane, "uninstall", gate.release, "--namespace", gate.namespace,
         check=False)
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        gate.plane.kubectl("delete", kind, webhook_configuration(gate), "--ignore-not-found")


def webhook_configuration(gate: Mlgate) -> str:
    """The name the chart gives both webhook configurations: `<fullname>-<namespace>`."""
    return f"{gate.release}-{gate.namespace}"


def token(plane: ControlPlane, service_account: str, namespace: str) -> str:
    """A ServiceAccount token from the real API server (`kubectl create token`)."""
    return plane.kubectl("create", "token", service_account, "-n", namespace,
                         "--duration=24h").stdout.strip()


def token_kubeconfig(plane: ControlPlane, path: Path, bearer: str) -> Path:
    """A kubeconfig that acts as a ServiceAccount, as a pod's in-cluster config does."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": plane.server, "certificate-authority": str(plane.pki / "ca.crt")}}],
        "users": [{"name": "sa", "user": {"token": bearer}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "sa"}}],
        "current-context": "e2e"}))
    return path


def audit_reader_token(gate: Mlgate, name: str = "e2e-audit-reader") -> str:
    """A ServiceAccount bound to the chart's audit-reader ClusterRole; its token is saved."""
    role = f"{gate.release}-{gate.namespace}-audit-reader"
    gate.plane.kubectl("create", "serviceaccount", name, "-n", gate.namespace)
    gate.plane.kubectl("create", "clusterrolebinding", name, f"--clusterrole={role}",
                       f"--serviceaccount={gate.namespace}:{name}")
    bearer = token(gate.plane, name, gate.namespace)
    (gate.workdir / "audit-token").write_text(bearer)
    return bearer


def install_crds(plane: ControlPlane, files: list[Path]) -> list[str]:
    """Create CRDs (server-side apply: many are too big for client-side apply) and wait
    until the API server serves them. Returns the CRD names."""
    names = []
    for path in files:
        doc = yaml.safe_load(path.read_text())
        names.append(doc["metadata"]["name"])
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path),
                      timeout=120)
    # `kubectl wait` fails at once ("status.conditions accessor error") on a CRD whose status
    # has no conditions yet, so poll until every one is Established.
    deadline = time.monotonic() + 60
    waiting = list(names)
    while waiting:
        conditions = get_json(plane, "crd", waiting[0]).get("status", {}).get("conditions")
        if any(c.get("type") == "Established" and c.get("status") == "True"
               for c in conditions or []):
            waiting.pop(0)
            continue
        if time.monotonic() > deadline:
            raise AssertionError(f"CRD {waiting[0]} not Established in 60 s: {conditions}")
        time.sleep(0.2)
    return names

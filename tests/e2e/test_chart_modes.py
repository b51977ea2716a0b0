"""`helm install` of the chart in each certificate mode, against a real API server.

One control plane for this module alone: each release here adds cluster-wide webhook
configurations that would intercept the requests of every other release's tests. Every
test uninstalls its release before the next one starts.

- `chart`: every optional object enabled (ServiceMonitor and PrometheusRule with their
  CRDs, NetworkPolicy, PDB, extra CEL matchConditions, an objectSelector); the API server
  stores each rendered object, compiles the CEL, and a broken expression fails the install.
- `cert-manager`: the CRDs installed, the Issuers and Certificates stored; the test plays
  cert-manager (issues the CA's and the serving Secret) and its cainjector (copies the
  Secret's `ca.crt` into the caBundle named by `cert-manager.io/inject-ca-from`), then
  admission goes through, and through a renewal of the serving certificate too.
- `self-managed`: `mlgate serve --self-signed`, running as the chart's ServiceAccount,
  writes the caBundle of the real webhook configurations; admission goes through.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import cluster, controlplane
from tests.e2e.cluster import Mlgate, get_json
from tests.e2e.test_apply import LIMITED_GPU, NO_LIMITS, apply, pod, stored
from tests.e2e.test_certificates import Creator, swap_files
from webhook import certs

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CI_VALUES = cluster.CHART / "ci"
SKIP_LABEL = "example.com/skip-mlgate"
TIER_LABEL = "example.com/tier"


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    with controlplane.running(tmp_path_factory.mktemp("modes-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def crds(isolated: controlplane.ControlPlane, shared: Path) -> Path:
    """prometheus-operator and cert-manager CRDs, as a cluster with both would have them."""
    cluster.install_crds(isolated, sorted((shared / "crds" / "prometheus-operator").glob("*.yaml"))
                         + sorted((shared / "crds" / "cert-manager").glob("*.yaml")))
    return shared


def manifest_objects(gate: Mlgate) -> list[dict[str, Any]]:
    """The objects helm rendered for the release (`helm get manifest`)."""
    text = cluster.helm(gate.plane, "get", "manifest", gate.release, "-n", gate.namespace).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def assert_all_stored(gate: Mlgate) -> set[str]:
    """Every rendered object exists in the API server; returns their kinds."""
    kinds = set()
    for obj in manifest_objects(gate):
        meta = obj["metadata"]
        args = [f"{obj['kind']}.{obj['apiVersion'].split('/')[0]}"
                if "/" in obj["apiVersion"] else obj["kind"], meta["name"]]
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        found = get_json(gate.plane, *args)
        assert found["metadata"]["name"] == meta["name"]
        kinds.add(obj["kind"])
    return kinds


def webhooks(gate: Mlgate) -> dict[str, dict[str, Any]]:
    """Both stored webhooks, by name."""
    name = cluster.webhook_configuration(gate)
    return {hook["name"]: hook
            for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")
            for hook in get_json(gate.plane, kind, name)["webhooks"]}


def assert_admission_works(gate: Mlgate, namespace: str) -> None:
    """A GPU pod is stored mutated, a pod without limits is refused by mlgate."""
    apply(gate, namespace, pod("gpu", LIMITED_GPU), check=True)
    assert GPU_TOLERATION in stored(gate, namespace, "pod", "gpu")["spec"]["tolerations"]
    denied = apply(gate, namespace, pod("nolimits", NO_LIMITS))
    assert denied.returncode == 1
    assert 'admission webhook "validate.mlgate.io" denied the request' in denied.stderr
    assert "[require-limits]" in denied.stderr


def sa_kubeconfig(gate: Mlgate) -> Path:
    """A kubeconfig acting as the chart's ServiceAccount (so the chart's RBAC is tested)."""
    return cluster.token_kubeconfig(gate.plane, gate.workdir / "sa-kubeconfig",
                                    cluster.token(gate.plane, gate.release, gate.namespace))


# -- chart mode, every optional object ------------------------------------------------
EVERYTHING = {
    "webhooks": {
        "excludedNamespaces": ["monitoring"],
        "objectSelector": {"matchExpressions": [
            {"key": TIER_LABEL, "operator": "NotIn", "values": ["system"]}]},
        "extraMatchConditions": [{
            "name": "not-skipped",
            "expression": f"!has(object.metadata.labels) || "
                          f"!('{SKIP_LABEL}' in object.metadata.labels)"}],
    },
    "networkPolicy": {"ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
    "serviceAccount": {"annotations": {"example.com/role": "mlgate"}},
    "imagePullSecrets": [{"name": "regcred"}],
}


def test_chart_mode_with_every_optional_object(isolated: controlplane.ControlPlane, crds: Path,
                                               tmp_path: Path) -> None:
    values = tmp_path / "everything.yaml"
    values.write_text(yaml.safe_dump(EVERYTHING))
    gate = cluster.install(isolated, tmp_path, "-f", str(CI_VALUES / "ha-values.yaml"),
                           "-f", str(values), namespace="mlgate-full")
    try:
        kinds = assert_all_stored(gate)
        assert kinds >= {"ServiceMonitor", "PrometheusRule", "NetworkPolicy",
                         "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding",
                         "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
                         "Deployment", "Service", "Secret", "ConfigMap", "ServiceAccount"}
        rule = get_json(isolated, "prometheusrule", gate.release, "-n", gate.namespace)
        alerts = {r["alert"] for r in rule["spec"]["groups"][0]["rules"]}
        assert alerts == {"MlgateWebhookErrors", "MlgateHighLatency",
                          "MlgateCertificateExpiring"}
        pdb = get_json(isolated, "pdb", gate.release, "-n", gate.namespace)
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
        for hook in webhooks(gate).values():
            assert [c["name"] for c in hook["matchConditions"]] == ["not-being-deleted",
                                                                     "not-skipped"]
            assert hook["objectSelector"] == EVERYTHING["webhooks"]["objectSelector"]
            excluded = hook["namespaceSelector"]["matchExpressions"][0]["values"]
            assert excluded == ["mlgate-full", "kube-system", "monitoring"]

        gate.start()
        namespace = isolated.namespace("modes-chart")
        assert_admission_works(gate, namespace)
        # The CEL condition, the objectSelector and the extra excluded namespace, applied
        # by the API server: never sent (mlgate would deny these pods without limits).
        excluded = isolated.namespace("monitoring")
        for ns, name, labels in ((namespace, "skipped", {SKIP_LABEL: "yes"}),
                                 (namespace, "system", {TIER_LABEL: "system"}),
                                 (excluded, "excluded", {})):
            obj = pod(name, NO_LIMITS)
            obj["metadata"]["labels"] = labels
            apply(gate, ns, obj, check=True)
            assert stored(gate, ns, "pod", name)["metadata"].get("labels", {}) == labels
    finally:
        cluster.uninstall(gate)


def test_a_match_condition_that_does_not_compile_fails_the_install(
        isolated: controlplane.ControlPlane, tmp_path: Path) -> None:
    """The API server compiles matchConditions: a type error is refused at install time."""
    values = tmp_path / "bad.yaml"
    values.write_text(yaml.safe_dump({"webhooks": {"extraMatchConditions": [
        {"name": "broken", "expression": "object.metadata.name + 1"}]}}))
    result = cluster.helm(isolated, "install", "mlgate", str(cluster.CHART), "-n", "mlgate-bad",
                          "--create-namespace", "-f", str(values), check=False)
    gate = Mlgate(plane=isolated, workdir=tmp_path, port=0, namespace="mlgate-bad")
    try:
        assert result.returncode != 0
        assert "matchConditions[1].expression" in result.stderr, result.stderr
        assert "must evaluate to bool but got int" in result.stderr, result.stderr
        # Neither configuration was stored: nothing intercepts requests afterwards.
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            missing = isolated.kubectl("get", kind, "mlgate-mlgate-bad", check=False)
            assert "NotFound" in missing.stderr
    finally:
        cluster.uninstall(gate)


# -- cert-manager mode ----------------------------------------------------------------
INJECT_FROM = "cert-manager.io/inject-ca-from"


def write_secret(gate: Mlgate, name: str, certificate: str,
                 files: dict[str, bytes]) -> None:
    """A Secret as cert-manager writes it for a Certificate."""
    gate.plane.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": gate.namespace,
                     "annotations": {"cert-manager.io/certificate-name": certificate}},
        "data": {key: base64.b64encode(value).decode() for key, value in files.items()}}))


def issue_like_cert_manager(gate: Mlgate, ca: certs.Bundle | None = None) -> certs.Bundle:
    """What cert-manager does for the chart's objects: the self-signed Issuer signs the CA
    Certificate into its Secret, the CA Issuer signs the serving Certificate with it (a new
    key each time: rotationPolicy Always). `ca`: a renewal, from the CA issued before."""
    def get(kind: str, name: str) -> dict[str, Any]:
        return get_json(gate.plane, f"{kind}.cert-manager.io", name, "-n", gate.namespace)

    serving = get("certificate", gate.release)["spec"]
    ca_issuer = get("issuer", serving["issuerRef"]["name"])["spec"]
    ca_secret = ca_issuer["ca"]["secretName"]
    (ca_certificate,) = [c for c in get_json(gate.plane, "certificates.cert-manager.io", "-n",
                                             gate.namespace)["items"]
                         if c["spec"]["secretName"] == ca_secret]
    assert ca_certificate["spec"]["isCA"] is True
    assert get("issuer", ca_certificate["spec"]["issuerRef"]["name"])["spec"] == \
        {"selfSigned": {}}
    if ca is None:
        ca = certs.generate(gate.release, gate.namespace, days=30)
        write_secret(gate, ca_secret, ca_certificate["metadata"]["name"], {
            "ca.crt": ca.ca_pem, "tls.crt": ca.ca_pem, "tls.key": ca.ca_key_pem})
    assert serving["commonName"] == f"{gate.release}.{gate.namespace}.svc"
    assert f"{gate.release}.{gate.namespace}.svc" in serving["dnsNames"]
    bundle = certs.issue(ca.ca_pem, ca.ca_key_pem, gate.release, gate.namespace, days=30)
    write_secret(gate, serving["secretName"], gate.release, {
        "ca.crt": bundle.ca_pem, "tls.crt": bundle.cert_pem, "tls.key": bundle.key_pem})
    return bundle


def inject_like_cainjector(plane: controlplane.ControlPlane, kind: str, name: str) -> None:
    """What cert-manager's cainjector does for `inject-ca-from: <ns>/<Certificate>`: read
    the Certificate, its Secret (which must name the Certificate), and write the Secret's
    `ca.crt` into the caBundle of every webhook of the configuration."""
    config = get_json(plane, kind, name)
    namespace, certificate_name = config["metadata"]["annotations"][INJECT_FROM].split("/")
    certificate = get_json(plane, "certificate.cert-manager.io", certificate_name,
                           "-n", namespace)
    secret = get_json(plane, "secret", certificate["spec"]["secretName"], "-n", namespace)
    assert secret["metadata"]["annotations"]["cert-manager.io/certificate-name"] == \
        certificate_name
    patch = [{"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle",
              "value": secret["data"]["ca.crt"]} for index in range(len(config["webhooks"]))]
    plane.kubectl("patch", kind, name, "--type=json", "-p", json.dumps(patch))


def test_cert_manager_mode(isolated: controlplane.ControlPlane, crds: Path,
                           tmp_path: Path) -> None:
    gate = cluster.install(isolated, tmp_path, "-f", str(CI_VALUES / "cert-manager-values.yaml"),
                           namespace="mlgate-cm", take_files=False)
    try:
        kinds = assert_all_stored(gate)
        assert {"Issuer", "Certificate"} <= kinds and "Secret" not in kinds
        name = cluster.webhook_configuration(gate)
        for hook in webhooks(gate).values():
            assert "caBundle" not in hook["clientConfig"]  # cainjector's job
        # The Deployment mounts the Secret the Certificate fills.
        deployment = get_json(isolated, "deployment", gate.release, "-n", gate.namespace)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        certificate = get_json(isolated, "certificate.cert-manager.io", gate.release,
                               "-n", gate.namespace)
        assert volumes["tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]

        bundle = issue_like_cert_manager(gate)
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            assert get_json(isolated, kind, name)["metadata"]["annotations"][INJECT_FROM] == \
                f"{gate.namespace}/{gate.release}"
            inject_like_cainjector(isolated, kind, name)
        for hook in webhooks(gate).values():
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == bundle.ca_pem

        gate.take_chart_files()  # the Secret cert-manager filled, as the pod mounts it
        gate.start()
        namespace = isolated.namespace("modes-cert-manager")
        assert_admission_works(gate, namespace)

        # A renewal: a new key and certificate from the same CA. cainjector finds the same
        # ca.crt (the caBundle is not even written again), and the pod's files change
        # under a loop of creates, none of which fails.
        versions = [get_json(isolated, kind, name)["metadata"]["resourceVersion"]
                    for kind in ("mutatingwebhookconfiguration",
                                 "validatingwebhookconfiguration")]
        creator = Creator(gate, namespace)
        creator.start()
        try:
            creator.created_since(0, 3)
            renewed = issue_like_cert_manager(gate, ca=bundle)
            for kind, version in zip(("mutatingwebhookconfiguration",
                                      "validatingwebhookconfiguration"), versions, strict=True):
                inject_like_cainjector(isolated, kind, name)
                assert get_json(isolated, kind, name)["metadata"]["resourceVersion"] == version
            mark = len(creator.results)
            swap_files(gate, renewed)
            creator.created_since(mark, 3)
        finally:
            creator.halt.set()
            creator.join(60)
        assert [r for r in creator.results if r[1] != 0] == []
    finally:
        cluster.uninstall(gate)


# -- self-managed mode ----------------------------------------------------------------
def test_self_managed_mode(isolated: controlplane.ControlPlane, tmp_path: Path) -> None:
    gate = cluster.install(isolated, tmp_path, "-f", str(CI_VALUES / "self-managed-values.yaml"),
                           namespace="mlgate-self", take_files=False)
    try:
        kinds = assert_all_stored(gate)
        assert "Secret" not in kinds
        for hook in webhooks(gate).values():
            assert "caBundle" not in hook["clientConfig"]
        configmap = get_json(isolated, "configmap", gate.release, "-n", gate.namespace)
        gate.config_file.parent.mkdir(parents=True, exist_ok=True)
        gate.config_file.write_text(configmap["data"]["mlgate.yaml"])
        name = cluster.webhook_configuration(gate)
        # The flags the chart's Deployment passes, with the chart's ServiceAccount.
        args = get_json(isolated, "deployment", gate.release, "-n", gate.namespace)[
            "spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--self-signed" in args and f"--mutating={name}" in args
        gate.self_signed = True
        gate.extra_args = ["--self-signed", f"--service-name={gate.release}",
                           f"--mutating={name}", f"--validating={name}",
                           "--cert-validity-days=30", "--renew-fraction=0.5",
                           f"--kubeconfig={sa_kubeconfig(gate)}"]
        gate.start()
        ca_pem = (gate.tls_dir / "ca.crt").read_bytes()
        for hook in webhooks(gate).values():
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca_pem
        assert_admission_works(gate, isolated.namespace("modes-self-managed"))
        # A `helm upgrade` (server-side apply) must not take away the caBundle mlgate wrote:
        # the chart renders none, and the field belongs to mlgate's field manager.
        cluster.upgrade(gate, "--set", "webhooks.timeoutSeconds=7")
        for hook in webhooks(gate).values():
            assert hook["timeoutSeconds"] == 7
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca_pem
        assert_admission_works(gate, isolated.namespace("modes-self-managed-upgraded"))

        # Another replica (a pod with its own emptyDir, so its own CA) takes over the
        # Service: it adds its CA and keeps the first one's, which other pods still serve.
        gate.stop()
        replica = Mlgate(plane=isolated, workdir=tmp_path / "replica", port=gate.port,
                         namespace=gate.namespace, release=gate.release, self_signed=True,
                         extra_args=gate.extra_args)
        replica.config_file.parent.mkdir(parents=True)
        replica.config_file.write_text(gate.config_file.read_text())
        try:
            replica.start()
            both = (replica.tls_dir / "ca.crt").read_bytes() + ca_pem
            for hook in webhooks(gate).values():
                assert base64.b64decode(hook["clientConfig"]["caBundle"]) == both
            assert_admission_works(replica, isolated.namespace("modes-self-managed-replica"))
        finally:
            replica.stop()
        gate.start()  # the first replica again: its CA is still trusted
        assert_admission_works(gate, isolated.namespace("modes-self-managed-first"))
    finally:
        cluster.uninstall(gate)

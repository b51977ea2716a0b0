"""The Helm chart rendered by the real helm binary, checked object by object."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from tests.chart import crd_schemas, helm
from webhook import kind_table

KUBERNETES_VERSION = "1.35"
SCENARIO_IDS = [path.stem.removesuffix("-values") for path in helm.SCENARIOS]


def scenario(name: str) -> Path:
    return helm.CHART / "ci" / f"{name}-values.yaml"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: helm.render(path) for name, path in zip(SCENARIO_IDS, helm.SCENARIOS,
                                                          strict=True)}


def webhook_configurations(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return (helm.by_kind(objects, "MutatingWebhookConfiguration")
            + helm.by_kind(objects, "ValidatingWebhookConfiguration"))


def test_every_required_scenario_exists() -> None:
    assert {"default", "cert-manager", "chart-certs", "self-managed", "ha",
            "webhooks-disabled"} <= set(SCENARIO_IDS)


@pytest.mark.parametrize("values", helm.SCENARIOS, ids=SCENARIO_IDS)
def test_helm_lint(values: Path) -> None:
    result = helm.lint(values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_every_object_matches_its_schema(rendered: dict[str, list[dict[str, Any]]],
                                         name: str) -> None:
    """Built-in kinds against kubernetes-validate (strict); CRD kinds against crd_schemas."""
    assert rendered[name], f"{name} rendered no objects"
    for obj in rendered[name]:
        where = f"{name}: {obj['kind']} {obj['metadata']['name']}"
        key = (obj["apiVersion"], obj["kind"])
        if key in crd_schemas.SCHEMAS:
            try:
                jsonschema.validate(obj, crd_schemas.SCHEMAS[key])
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}")
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: no schema in kubernetes-validate and none in crd_schemas")


def test_crd_schemas_reject_a_wrong_field(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The stand-in schemas are strict enough to catch a typo."""
    certificate = helm.by_kind(rendered["cert-manager"], "Certificate")[0]
    broken = {**certificate, "spec": {**certificate["spec"], "dnsName": ["x"]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schemas.CERTIFICATE)


def test_rules_file_is_generated_from_the_kind_table() -> None:
    result = subprocess.run([sys.executable, "scripts/render_chart.py", "--check"],
                            cwd=helm.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    on_disk = yaml.safe_load((helm.CHART / "files" / "rules.yaml").read_text())
    assert on_disk == kind_table.webhook_rules()
    mutating = yaml.safe_load((helm.CHART / "files" / "mutate-rules.yaml").read_text())
    assert mutating == kind_table.webhook_rules(mutating=True)


def test_readme_lists_every_value() -> None:
    """The README's table is generated from values.yaml and every key is documented."""
    sys.path.insert(0, str(helm.ROOT / "scripts"))
    try:
        import render_chart
    finally:
        sys.path.pop(0)
    values_text = (helm.CHART / "values.yaml").read_text()
    assert render_chart.undocumented_leaves(values_text) == []
    readme = (helm.CHART / "README.md").read_text()
    assert readme == render_chart.render_readme(readme, values_text)
    for key, _, _ in render_chart.documented_values(values_text):
        assert f"| `{key}` |" in readme


@pytest.mark.parametrize("name", ["default", "cert-manager", "chart-certs", "self-managed",
                                  "ha"])
def test_webhook_configurations(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    configurations = webhook_configurations(rendered[name])
    assert {c["kind"] for c in configurations} == {"MutatingWebhookConfiguration",
                                                   "ValidatingWebhookConfiguration"}
    service = helm.one(rendered[name], "Service")
    extra_excluded = yaml.safe_load(scenario(name).read_text() or "{}") or {}
    extra_excluded = extra_excluded.get("webhooks", {}).get("excludedNamespaces", [])
    for configuration in configurations:
        mutating = configuration["kind"] == "MutatingWebhookConfiguration"
        (hook,) = configuration["webhooks"]
        where = f"{name}: {configuration['kind']} {hook['name']}"
        assert len(hook["name"].split(".")) == 3, where
        assert hook["rules"] == kind_table.webhook_rules(mutating), where
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["timeoutSeconds"] == 5
        assert hook["failurePolicy"] == "Fail"
        if mutating:
            assert hook["reinvocationPolicy"] == "IfNeeded"
        else:
            assert "reinvocationPolicy" not in hook
        client = hook["clientConfig"]["service"]
        assert client == {"name": service["metadata"]["name"], "namespace": helm.NAMESPACE,
                          "path": "/mutate" if mutating else "/validate",
                          "port": service["spec"]["ports"][0]["port"]}
        expressions = hook["namespaceSelector"]["matchExpressions"]
        excluded = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
        assert excluded["operator"] == "NotIn"
        assert set(excluded["values"]) == {helm.NAMESPACE, "kube-system", *extra_excluded}
        assert {"key": "mlgate.io/ignore", "operator": "DoesNotExist"} in expressions
        conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
        assert conditions["not-being-deleted"] == "!has(object.metadata.deletionTimestamp)"


def test_service_reaches_the_https_and_health_ports(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    service = helm.one(rendered["default"], "Service")
    container = helm.one(rendered["default"], "Deployment")["spec"]["template"]["spec"][
        "containers"][0]
    https, health = service["spec"]["ports"]
    assert (https["name"], https["targetPort"]) == ("https", "https")
    assert (health["name"], health["port"], health["targetPort"]) == ("health", 8080, "health")
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"},
                                  {"name": "health", "containerPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize("name", ["default", "chart-certs"])
def test_chart_certificates(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    """One CA in the Secret and both caBundles; it signed a cert for the Service's names."""
    objects = rendered[name]
    secret = helm.one(objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    bundles = {c["kind"]: c["webhooks"][0]["clientConfig"]["caBundle"]
               for c in webhook_configurations(objects)}
    assert set(bundles.values()) == {secret["data"]["ca.crt"]}
    ca = x509.load_pem_x509_certificate(ca_pem)
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    served.verify_directly_issued_by(ca)
    service = helm.one(objects, "Service")["metadata"]["name"]
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {
        service, f"{service}.{helm.NAMESPACE}", f"{service}.{helm.NAMESPACE}.svc",
        f"{service}.{helm.NAMESPACE}.svc.cluster.local"}
    volumes = helm.one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": secret["metadata"]["name"],
                                      "defaultMode": 0o440}} in volumes


def test_cert_manager_mode(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["cert-manager"]
    certificates = {c["metadata"]["name"]: c for c in helm.by_kind(objects, "Certificate")}
    issuers = {i["metadata"]["name"]: i for i in helm.by_kind(objects, "Issuer")}
    certificate = certificates.pop(helm.one(objects, "Service")["metadata"]["name"])
    # The serving certificate comes from a CA of the chart's own, not from the self-signed
    # Issuer: a renewal then keeps the caBundle (a new self-signed root would be injected
    # before the pods' Secret volumes catch up, and the API server would refuse them).
    (ca,) = certificates.values()
    assert ca["spec"]["isCA"] is True
    assert issuers[ca["spec"]["issuerRef"]["name"]]["spec"] == {"selfSigned": {}}
    ca_issuer = issuers[certificate["spec"]["issuerRef"]["name"]]
    assert certificate["spec"]["issuerRef"]["kind"] == "Issuer"
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
    assert ca["spec"]["secretName"] != certificate["spec"]["secretName"]
    assert helm.by_kind(objects, "Secret") == []
    reference = f"{helm.NAMESPACE}/{certificate['metadata']['name']}"
    for configuration in webhook_configurations(objects):
        assert configuration["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": reference}
        assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    volumes = helm.one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    tls = next(v for v in volumes if v["name"] == "tls")
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]


def test_cert_manager_with_an_existing_issuer() -> None:
    objects = helm.render(scenario("cert-manager"), set_json={
        "certificates.certManager.issuerRef": '{"name": "corp-ca", "kind": "ClusterIssuer"}'})
    assert helm.by_kind(objects, "Issuer") == []  # neither the self-signed nor the CA one
    assert helm.one(objects, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca", "kind": "ClusterIssuer"}


def _cluster_roles(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in helm.by_kind(objects, "ClusterRole")}


def _rbac_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules of the server's own ClusterRole (not the audit-reader role for people)."""
    roles = _cluster_roles(objects)
    (server,) = [r for name, r in roles.items() if not name.endswith("-audit-reader")]
    rules: list[dict[str, Any]] = server["rules"]
    return rules


def test_audit_reader_role_grants_only_reading_the_audit_api(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    (reader,) = [r for name, r in _cluster_roles(rendered["default"]).items()
                 if name.endswith("-audit-reader")]
    assert reader["rules"] == [{"nonResourceURLs": ["/audit/report", "/audit/decisions"],
                                "verbs": ["get"]}]
    without = helm.render(sets={"rbac.auditReaderRole": "false"})
    assert not [n for n in _cluster_roles(without) if n.endswith("-audit-reader")]


def test_self_managed_mode(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["self-managed"]
    assert helm.by_kind(objects, "Secret") == []
    names = {c["metadata"]["name"] for c in webhook_configurations(objects)}
    for configuration in webhook_configurations(objects):
        assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    container = helm.one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert "--self-signed" in args
    assert f"--service-name={helm.one(objects, 'Service')['metadata']['name']}" in args
    assert {f"--mutating={n}" for n in names} | {f"--validating={n}" for n in names} <= set(args)
    assert not any(a.startswith("--tls-cert") for a in args)
    patching = [r for r in _rbac_rules(objects)
                if r["apiGroups"] == ["admissionregistration.k8s.io"]]
    assert sorted(r["resources"][0] for r in patching) == [
        "mutatingwebhookconfigurations", "validatingwebhookconfigurations"]
    for rule in patching:
        assert rule["verbs"] == ["get", "patch"]
        assert set(rule["resourceNames"]) == names


@pytest.mark.parametrize("name", ["default", "cert-manager", "ha"])
def test_rbac_is_limited_to_what_is_used(rendered: dict[str, list[dict[str, Any]]],
                                         name: str) -> None:
    rules = _rbac_rules(rendered[name])
    reading = [r for r in rules if r["verbs"] == ["get", "list", "watch"]]
    assert [{"apiGroups": r["apiGroups"], "resources": r["resources"]} for r in reading] == [
        {"apiGroups": r["apiGroups"], "resources": r["resources"]}
        for r in kind_table.webhook_rules()]
    others = [r for r in rules if r not in reading]
    assert others == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]


REPORTS_RULE = {"apiGroups": ["wgpolicyk8s.io"],
                "resources": ["policyreports", "clusterpolicyreports"],
                "verbs": ["get", "list", "create", "patch", "delete"]}


def _config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(helm.one(objects, "ConfigMap")["data"]["mlgate.yaml"])
    return config


def test_policy_reports_are_opt_in_with_rbac_only_for_the_reports(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert REPORTS_RULE not in _rbac_rules(rendered["default"])
    assert "audit" not in _config(rendered["default"])
    objects = helm.render(sets={"policyReports.enabled": "true",
                                "policyReports.maxResults": "50",
                                "config.audit.scan.interval": "5m"})
    assert REPORTS_RULE in _rbac_rules(objects)
    audit = _config(objects)["audit"]
    assert audit["policyReports"] == {"enabled": True, "maxResults": 50}
    assert audit["scan"] == {"enabled": True, "interval": "5m"}  # the user's keys are kept
    assert not helm.by_kind(objects, "CustomResourceDefinition")  # the chart expects the CRDs
    assert "kubectl get crd policyreports.wgpolicyk8s.io" in helm.notes(
        sets={"policyReports.enabled": "true"})
    assert "PolicyReports" not in helm.notes()


def test_events_can_be_switched_off_with_their_rbac(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = helm.render(sets={"events.enabled": "false"})
    assert not [r for r in _rbac_rules(objects) if r["apiGroups"] == ["events.k8s.io"]]
    assert _config(objects)["audit"] == {"events": {"enabled": False}}


def test_hardened_deployment(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = helm.one(rendered["default"], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    security = container["securityContext"]
    assert isinstance(security["runAsUser"], int) and security["runAsUser"] > 0
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # probes on the health listener, apart from admission, with explicit timeouts
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health",
                                                      "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health",
                                                     "scheme": "HTTP"}
    assert container["readinessProbe"]["timeoutSeconds"] == 1
    assert "--health-port=8080" in container["args"]
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {"name": "MLGATE_NAMESPACE", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.namespace"}}} in container["env"]
    assert container["args"][0] == "serve"
    assert "--config=/etc/mlgate/config/mlgate.yaml" in container["args"]
    # a read-only root: the only writable places are emptyDirs
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert writable == {"/var/lib/mlgate", "/tmp"}
    assert {m["name"] for m in container["volumeMounts"] if not m.get("readOnly")} == empty_dirs
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"][
        "matchLabels"]


def test_configmap_holds_the_configuration(rendered: dict[str, list[dict[str, Any]]]) -> None:
    from webhook import config

    configmap = helm.one(rendered["default"], "ConfigMap")
    data = yaml.safe_load(configmap["data"]["mlgate.yaml"])
    values = yaml.safe_load((helm.CHART / "values.yaml").read_text())
    assert data == values["config"]
    assert config.from_mapping(data, environ={}).policies["require-limits"].mode == "enforce"


def test_high_availability(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["ha"]
    pod = helm.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert helm.one(objects, "Deployment")["spec"]["replicas"] == 3
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert helm.one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in helm.one(objects, "PodDisruptionBudget")["spec"]
    alerts = {r["alert"] for g in helm.one(objects, "PrometheusRule")["spec"]["groups"]
              for r in g["rules"]}
    assert alerts == {"MlgateWebhookErrors", "MlgateHighLatency", "MlgateCertificateExpiring"}
    # scrapes go to the health port, which answers whatever admission is doing
    endpoint = helm.one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == ("health", "http",
                                                                        "/metrics")
    ports = {p["name"]: p for p in helm.one(objects, "Service")["spec"]["ports"]}
    assert ports["health"]["targetPort"] == "health" and ports["https"]["targetPort"] == "https"
    policy = helm.one(objects, "NetworkPolicy")["spec"]
    assert policy["ingress"] == [{"ports": [{"port": 8443, "protocol": "TCP"},
                                            {"port": 8080, "protocol": "TCP"}]}]
    assert policy["policyTypes"] == ["Ingress", "Egress"]


def test_scrapes_need_a_token_on_the_admission_port_when_metrics_are_not_public() -> None:
    objects = helm.render(sets={"serviceMonitor.enabled": "true",
                                "config.audit.metricsPublic": "false"})
    endpoint = helm.one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"]) == ("https", "https")
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}


def test_default_pdb_and_optional_objects_off(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["default"]
    assert helm.one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    for kind in ("ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Certificate"):
        assert helm.by_kind(objects, kind) == [], kind


def test_webhooks_disabled(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["webhooks-disabled"]
    assert webhook_configurations(objects) == []
    assert helm.by_kind(objects, "Deployment")


def test_pdb_with_both_bounds_fails_to_render() -> None:
    result = helm.template(sets={"podDisruptionBudget.minAvailable": "1",
                                 "podDisruptionBudget.maxUnavailable": "1"})
    assert result.returncode != 0
    assert "set either minAvailable or maxUnavailable, not both" in result.stderr


@pytest.mark.parametrize(("key", "value", "complaint"), [
    ("replicaCount", "two", "/replicaCount"),
    ("webhooks.timeoutSeconds", "5s", "/webhooks/timeoutSeconds"),
    ("webhooks.validating.failurePolicy", "Maybe", "/webhooks/validating/failurePolicy"),
    ("certificates.mode", "vault", "/certificates/mode"),
    ("podDisruptionBudget.enabled", "yes", "/podDisruptionBudget/enabled"),
    ("replicaCount2", "3", "replicaCount2"),
])
def test_schema_rejects_wrong_types(key: str, value: str, complaint: str) -> None:
    result = helm.template(sets={key: value})
    assert result.returncode != 0, f"{key}={value} was accepted"
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


def test_schema_rejects_a_timeout_over_the_api_server_limit() -> None:
    result = helm.template(sets={"webhooks.timeoutSeconds": "31"})
    assert result.returncode != 0 and "/webhooks/timeoutSeconds" in result.stderr


WARNING = "WARNING: failurePolicy is Fail with replicaCount=1"


def test_notes_warn_when_fail_runs_on_one_replica() -> None:
    assert WARNING in helm.notes(sets={"replicaCount": "1"})


@pytest.mark.parametrize("sets", [
    {"replicaCount": "2"},
    {"replicaCount": "1", "webhooks.mutating.failurePolicy": "Ignore",
     "webhooks.validating.failurePolicy": "Ignore"},
])
def test_notes_quiet_otherwise(sets: dict[str, str]) -> None:
    text = helm.notes(sets=sets)
    assert "mlgate" in text and "WARNING" not in text


def test_alerts_use_metrics_the_server_exports(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The PrometheusRule cannot drift from webhook/metrics.py."""
    import re

    from webhook import metrics

    exported = set()
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                    "gauge": [""]}.get(family.type, [""])
        exported |= {family.name + suffix for suffix in suffixes}
    rule = helm.one(rendered["ha"], "PrometheusRule")
    used = {name for group in rule["spec"]["groups"] for r in group["rules"]
            for name in re.findall(r"\bmlgate_[a-z_]+", r["expr"])}
    assert used and used <= exported, used - exported


@pytest.mark.parametrize(("sets", "workers"), [
    ({}, "1"),                                                   # no CPU limit
    ({"resources.limits.cpu": "1500m"}, "2"),                    # millicores, rounded up
    ({"resources.limits.cpu": "4"}, "4"),
    ({"resources.limits.cpu": "0.5"}, "1"),
    ({"resources.limits.cpu": "4", "server.workers": "2"}, "2"),  # the value wins
])
def test_workers_follow_the_cpu_limit_unless_set(sets: dict[str, str], workers: str) -> None:
    container = helm.one(helm.render(sets=sets), "Deployment")["spec"]["template"]["spec"][
        "containers"][0]
    assert f"--workers={workers}" in container["args"]


def test_the_config_is_a_directory_mount_so_configmap_edits_reach_the_server(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    """kubelet never updates a subPath mount: the config must be mounted as a directory."""
    deployment = helm.one(rendered["default"], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config"]
    assert mount == {"name": "config", "mountPath": "/etc/mlgate/config", "readOnly": True}
    assert "checksum/config" not in deployment["spec"]["template"]["metadata"].get(
        "annotations", {})
    restarting = helm.one(helm.render(sets={"restartOnConfigChange": "true"}), "Deployment")
    assert "checksum/config" in restarting["spec"]["template"]["metadata"]["annotations"]
    # the checksum covers what the switches merge into the config, not only `config`
    reports = helm.one(helm.render(sets={"restartOnConfigChange": "true",
                                         "policyReports.enabled": "true"}), "Deployment")
    assert (reports["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            != restarting["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

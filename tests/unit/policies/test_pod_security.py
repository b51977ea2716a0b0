"""pod-security: the Pod Security Standards controls, on every kind and container kind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests import factories
from tests.factories import container, pod_spec
from tests.fixtures.policies import kinds
from webhook import admission, config, decisions, engine, errors, kind_table


def build(params: dict[str, Any] | None = None) -> engine.Engine:
    policies: dict[str, Any] = {name: {"mode": "off"} for name in config.DEFAULT_POLICIES}
    policies["pod-security"] = {"mode": "enforce", "params": params or {}}
    return engine.Engine.build(config.from_mapping({"policies": policies}, environ={}))


BASELINE = build()


def findings(obj: dict[str, Any], eng: engine.Engine = BASELINE,
             namespace: str | None = None) -> list[decisions.Finding]:
    review = factories.admission_review(obj, namespace=namespace)
    decision = asyncio.run(eng.evaluate(admission.parse(json.dumps(review).encode()),
                                        engine.VALIDATE))
    assert not any(f.error for f in decision.findings), decision.findings
    return decision.findings


def paths(obj: dict[str, Any], eng: engine.Engine = BASELINE,
          namespace: str | None = None) -> list[str]:
    return [f.path for f in findings(obj, eng, namespace)]


def sc(**fields: Any) -> dict[str, Any]:
    return {"securityContext": fields}


RESTRICTED_CONTAINER = sc(allowPrivilegeEscalation=False, runAsNonRoot=True,
                          capabilities={"drop": ["ALL"]},
                          seccompProfile={"type": "RuntimeDefault"})


@pytest.mark.parametrize("kind", kind_table.WORKLOAD_KINDS, ids=kinds.KIND_IDS)
def test_privileged_container_is_denied_on_every_kind(kind: kind_table.KindSpec) -> None:
    spec = pod_spec(container("ok"), container("root", **sc(privileged=True)))
    obj = kinds.wrap(kind, spec)
    view = kind_table.view(obj)
    found = findings(obj)
    expected = {c.field_pointer("securityContext", "privileged")
                for _, c in view.containers() if c.name == "root"}
    assert {f.path for f in found} == expected and expected
    assert all('container "root"' in f.message and "runs privileged" in f.message
               for f in found)


@pytest.mark.parametrize("kind", kind_table.WORKLOAD_KINDS, ids=kinds.KIND_IDS)
def test_a_default_pod_passes_baseline_on_every_kind(kind: kind_table.KindSpec) -> None:
    assert findings(kinds.wrap(kind, pod_spec(container("main")))) == []


def test_init_sidecar_and_ephemeral_containers_are_checked() -> None:
    spec = pod_spec(
        container("main"),
        initContainers=[container("init", **sc(capabilities={"add": ["SYS_ADMIN"]})),
                        container("sidecar", restartPolicy="Always",
                                  ports=[{"containerPort": 80, "hostPort": 80}])],
        ephemeralContainers=[container("debug", **sc(procMount="Unmasked"))])
    assert paths(factories.pod(spec)) == [
        "/spec/initContainers/0/securityContext/capabilities/add",
        "/spec/initContainers/1/ports/0/hostPort",
        "/spec/ephemeralContainers/0/securityContext/procMount",
    ]


def test_every_failing_field_is_reported_at_once() -> None:
    spec = pod_spec(
        container("a", **sc(privileged=True, seLinuxOptions={"user": "sysadm_u",
                                                               "type": "spc_t"})),
        hostNetwork=True, hostPID=True, hostIPC=True,
        volumes=[{"name": "host", "hostPath": {"path": "/var/run"}}],
        securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}],
                         "seccompProfile": {"type": "Unconfined"},
                         "windowsOptions": {"hostProcess": True}})
    got = paths(factories.pod(spec))
    assert set(got) == {
        "/spec/securityContext/windowsOptions/hostProcess", "/spec/hostNetwork",
        "/spec/hostPID", "/spec/hostIPC", "/spec/containers/0/securityContext/privileged",
        "/spec/volumes/0/hostPath", "/spec/containers/0/securityContext/seLinuxOptions/type",
        "/spec/containers/0/securityContext/seLinuxOptions/user",
        "/spec/containers/0", "/spec/securityContext/sysctls/0/name",
    }
    messages = "\n".join(f.message for f in findings(factories.pod(spec)))
    assert "kernel.msgmax" in messages
    assert "inherits the pod's seccomp profile Unconfined" in messages
    assert "(baseline level)" in messages


def test_net_raw_is_not_a_baseline_capability_unless_allowed() -> None:
    obj = factories.pod(pod_spec(container("ping", **sc(capabilities={"add": ["NET_RAW"]}))))
    (finding,) = findings(obj)
    assert "adds capabilities NET_RAW" in finding.message
    assert findings(obj, build({"allowedCapabilities": ["NET_RAW"]})) == []
    fine = factories.pod(pod_spec(container("web", **sc(capabilities={"add": ["CHOWN"]}))))
    assert findings(fine) == []


def test_sysctls_follow_the_pss_safe_set_and_forbidden_wins() -> None:
    def with_sysctl(name: str) -> dict[str, Any]:
        return factories.pod(pod_spec(securityContext={"sysctls": [{"name": name, "value": "1"}]}))

    assert findings(with_sysctl("net.ipv4.tcp_keepalive_time")) == []
    assert len(findings(with_sysctl("net.core.somaxconn"))) == 1
    eng = build({"allowedSysctls": ["net.*"], "forbiddenSysctls": ["net.ipv4.tcp_*"]})
    assert findings(with_sysctl("net.core.somaxconn"), eng) == []
    assert len(findings(with_sysctl("net.ipv4.tcp_syncookies"), eng)) == 1


def test_host_paths_are_allowed_only_under_an_allowed_prefix_and_read_only() -> None:
    eng = build({"allowedHostPaths": [{"pathPrefix": "/data", "readOnly": True}]})

    def mounting(path: str, read_only: bool) -> dict[str, Any]:
        return factories.pod(pod_spec(
            container("m", volumeMounts=[{"name": "d", "mountPath": "/d",
                                          "readOnly": read_only}]),
            volumes=[{"name": "d", "hostPath": {"path": path}}]))

    assert findings(mounting("/data/imagenet", True), eng) == []
    assert paths(mounting("/database", True), eng) == ["/spec/volumes/0/hostPath"]
    (writable,) = findings(mounting("/data", False), eng)
    assert "writable" in writable.message and writable.container == "m"
    assert paths(mounting("/data/imagenet", True)) == ["/spec/volumes/0/hostPath"]


def test_host_ports_in_an_allowed_range_pass() -> None:
    eng = build({"allowedHostPorts": ["9000-9100", "8080"]})

    def port(number: int) -> dict[str, Any]:
        return factories.pod(pod_spec(container(
            "p", ports=[{"containerPort": number, "hostPort": number}])))

    assert findings(port(9050), eng) == [] and findings(port(8080), eng) == []
    assert paths(port(9101), eng) == ["/spec/containers/0/ports/0/hostPort"]
    assert findings(factories.pod(pod_spec(container(
        "p", ports=[{"containerPort": 80, "hostPort": 0}])))) == []


def test_a_container_profile_overrides_the_pod_profile() -> None:
    override = factories.pod(pod_spec(
        container("a", **sc(seccompProfile={"type": "RuntimeDefault"},
                            appArmorProfile={"type": "RuntimeDefault"})),
        securityContext={"seccompProfile": {"type": "Unconfined"},
                         "appArmorProfile": {"type": "Unconfined"}}))
    assert findings(override) == []
    own = factories.pod(pod_spec(container("a", **sc(appArmorProfile={"type": "Unconfined"}))))
    assert paths(own) == ["/spec/containers/0/securityContext/appArmorProfile/type"]


def test_apparmor_annotations_of_a_pod_template_are_read() -> None:
    deployment = kinds.wrap(kind_table.lookup("apps", "Deployment"), pod_spec(container("app")),
                            template_annotations={
                                "container.apparmor.security.beta.kubernetes.io/app":
                                    "unconfined"})
    template = deployment["spec"]["template"]["metadata"]
    (finding,) = findings(deployment)
    assert "AppArmor profile unconfined" in finding.message
    template["annotations"]["container.apparmor.security.beta.kubernetes.io/app"] = (
        "localhost/k8s-nginx")
    assert findings(deployment) == []
    assert len(findings(deployment, build({"localhostProfiles": ["ml-*"]}))) == 1


def test_restricted_reports_each_missing_hardening_field() -> None:
    eng = build({"level": "restricted"})
    bare = factories.pod(pod_spec(container("main"), volumes=[
        {"name": "scratch", "emptyDir": {}}, {"name": "nfs", "nfs": {"server": "x", "path": "/"}}]))
    messages = [f.message for f in findings(bare, eng)]
    assert len(messages) == 5, messages
    joined = "\n".join(messages)
    for text in ("does not drop ALL", "allowPrivilegeEscalation", "runAsNonRoot",
                 "no seccomp profile", "volume 'nfs' is of type nfs"):
        assert text in joined
    hardened = factories.pod(pod_spec(container("main", **RESTRICTED_CONTAINER),
                                      volumes=[{"name": "scratch", "emptyDir": {}}]))
    assert findings(hardened, eng) == []


def test_restricted_accepts_pod_level_settings_and_rejects_root() -> None:
    eng = build({"level": "restricted"})
    obj = factories.pod(pod_spec(
        container("main", **sc(allowPrivilegeEscalation=False, capabilities={
            "drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})),
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}))
    assert findings(obj, eng) == []
    obj["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    obj["spec"]["containers"][0]["securityContext"]["capabilities"]["add"].append("CHOWN")
    assert paths(obj, eng) == ["/spec/containers/0/securityContext/capabilities/add",
                               "/spec/containers/0/securityContext/runAsUser"]


def test_restricted_skips_linux_only_controls_on_windows_pods() -> None:
    eng = build({"level": "restricted"})
    obj = factories.pod(pod_spec(container("win", **sc(runAsNonRoot=True)), os={"name": "windows"}))
    assert findings(obj, eng) == []


def test_levels_follow_namespace_globs() -> None:
    eng = build({"namespaces": [{"namespaces": ["prod-*"], "level": "restricted"}]})
    obj = factories.pod(pod_spec(container("main")))
    assert findings(obj, eng, namespace="dev") == []
    restricted = findings(obj, eng, namespace="prod-serving")
    assert restricted and all("(restricted level)" in f.message for f in restricted)


def test_exempt_images_and_disabled_controls() -> None:
    spec = pod_spec(container("tool", image="registry.example.com/ops/nsenter:1",
                              **sc(privileged=True)), hostNetwork=True)
    obj = factories.pod(spec)
    eng = build({"exemptImages": ["registry.example.com/ops/*"]})
    assert paths(obj, eng) == ["/spec/hostNetwork"], "pod-level checks still apply"
    assert findings(obj, build({"exemptImages": ["registry.example.com/ops/*"],
                                "disabledControls": ["hostNamespaces"]})) == []


@pytest.mark.parametrize(("params", "text"), [
    ({"disabledControls": ["privileged", "hostpath"]}, "unknown control 'hostpath'"),
    ({"allowedHostPorts": ["80-70"]}, "'80-70' is outside 1-65535 or reversed"),
    ({"allowedHostPorts": ["http"]}, "'http' is not a port or a range"),
    ({"level": "strict"}, "policies.pod-security.params.level"),
])
def test_bad_params_are_config_errors(params: dict[str, Any], text: str) -> None:
    with pytest.raises(errors.ConfigError, match="pod-security") as info:
        build(params)
    assert text in str(info.value)


def test_malformed_fields_never_crash() -> None:
    spec = {"containers": [{"name": "x", "securityContext": "yes", "ports": "80"}],
            "volumes": ["nope", {"name": "h", "hostPath": None}],
            "securityContext": {"sysctls": [None, {"name": 3}]}}
    got = paths(factories.pod(spec))
    assert got == ["/spec/securityContext/sysctls/1/name"]

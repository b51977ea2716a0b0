"""The Kubernetes Pod Security Standards, per namespace, on every pod spec of every kind.

The built-in Pod Security Admission only sees Pods (a Deployment with a privileged template
is admitted, and its pods then fail to appear). This policy checks the pod templates of every
kind in the workload table at admission, so the owner of a PyTorchJob or a RayCluster hears
about it at `kubectl apply`, with every failing field named.

Every control follows the Pod Security Standards text (kubernetes.io/docs/concepts/security/
pod-security-standards). Where the peers differ, mlgate follows that text:

- Capabilities: NET_RAW is *not* in the baseline set (as in Kyverno; the Gatekeeper baseline
  sample adds it). Add it to `allowedCapabilities` to allow it.
- Sysctls: the safe set is the ten names the PSS lists (as in the Gatekeeper sample; the
  Kyverno policy still has the five of Kubernetes 1.22).
- Seccomp and AppArmor are judged per container on the *effective* profile: a container's
  own profile overrides the pod's, and the pod's applies to containers that set none, as the
  kubelet does. Legacy annotations count where no field is set.

Params that are not in the PSS (`allowedHostPaths`, `allowedHostPorts`, `allowHostNetwork`,
`exemptImages`, `forbiddenSysctls`, `requiredDropCapabilities`, `localhostProfiles`) only relax
or tighten the defaults, which are exactly the standard. `disabledControls` turns off whole
controls by name (as PSA exemptions and Kyverno `exclude` do), for the namespaces that need it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from webhook import policy, workloads

Level = Literal["baseline", "restricted"]

# Capabilities the baseline level lets a container add (PSS "Capabilities").
BASELINE_CAPABILITIES = [
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
]
# The only capability the restricted level lets a container add back after dropping ALL.
RESTRICTED_CAPABILITIES = ["NET_BIND_SERVICE"]
# Sysctls the PSS lists as safe (namespaced and isolated between pods).
SAFE_SYSCTLS = [
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
]
SELINUX_TYPES = ["container_t", "container_init_t", "container_kvm_t", "container_engine_t"]
# Volume sources the restricted level allows.
RESTRICTED_VOLUMES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"]

APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"

BASELINE_CONTROLS = ["hostProcess", "hostNamespaces", "privileged", "capabilities",
                     "hostPathVolumes", "hostPorts", "appArmor", "seLinux", "procMount",
                     "seccomp", "sysctls"]
RESTRICTED_CONTROLS = ["volumeTypes", "privilegeEscalation", "runAsNonRoot", "runAsUser"]
CONTROLS = BASELINE_CONTROLS + RESTRICTED_CONTROLS

_PORT_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class HostPath(policy.Params):
    pathPrefix: str = Field(description="Allowed host path prefix, matched by whole path "
                                        "components (/data allows /data/x, not /database).")
    readOnly: bool = Field(False, description="Every mount of the volume must be readOnly.")


class NamespaceLevel(policy.Params):
    namespaces: list[str] = Field(description="Namespace globs, e.g. [prod-*, serving].")
    level: Level = Field(description="baseline or restricted for these namespaces.")


class Params(policy.Params):
    level: Level = Field("baseline", description="Level for namespaces no `namespaces` entry "
                                                 "matches: baseline or restricted.")
    namespaces: list[NamespaceLevel] = Field(
        default_factory=list, description="Per-namespace levels; the first matching entry wins.")
    allowedHostPaths: list[HostPath] = Field(
        default_factory=list, description="hostPath volumes allowed despite the standard "
                                          "(baseline forbids every hostPath).")
    allowedHostPorts: list[str] = Field(
        default_factory=list, description="hostPorts allowed despite the standard, as ports "
                                          "or inclusive ranges: ['8080', '9000-9100'].")
    allowHostNetwork: bool = Field(False, description="Allow hostNetwork (the standard forbids "
                                                      "it; hostPID and hostIPC stay forbidden).")
    allowedCapabilities: list[str] = Field(
        default_factory=lambda: list(BASELINE_CAPABILITIES),
        description="Capabilities containers may add at baseline (the PSS set; NET_RAW is "
                    "not in it). Restricted allows NET_BIND_SERVICE only.")
    requiredDropCapabilities: list[str] = Field(
        default_factory=list, description="Capabilities every container must drop "
                                          "(restricted always requires ALL).")
    allowedSysctls: list[str] = Field(
        default_factory=lambda: list(SAFE_SYSCTLS),
        description="Sysctl names (globs) pods may set: the PSS safe set by default.")
    forbiddenSysctls: list[str] = Field(
        default_factory=list, description="Sysctl globs always refused (wins over allowed).")
    allowedSELinuxTypes: list[str] = Field(
        default_factory=lambda: list(SELINUX_TYPES),
        description="seLinuxOptions.type values allowed (unset is always allowed).")
    localhostProfiles: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Localhost seccomp/AppArmor profile names (globs) allowed.")
    exemptImages: list[str] = Field(
        default_factory=list, description="Image globs whose containers skip the container "
                                          "checks (pod-level checks still apply).")
    disabledControls: list[str] = Field(
        default_factory=list, description=f"Controls not checked, by name: {', '.join(CONTROLS)}.")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _glob(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def parse_port_ranges(entries: list[str]) -> list[tuple[int, int]]:
    """`['8080', '9000-9100']` -> [(8080, 8080), (9000, 9100)]; ValueError naming the entry."""
    ranges = []
    for entry in entries:
        match = _PORT_RANGE.match(str(entry).strip())
        if not match:
            raise ValueError(f"allowedHostPorts: {entry!r} is not a port or a range like 80-9000")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not 0 < low <= high <= 65535:
            raise ValueError(f"allowedHostPorts: {entry!r} is outside 1-65535 or reversed")
        ranges.append((low, high))
    return ranges


def _under(path: str, prefix: str) -> bool:
    """PSP-style prefix match by whole path components."""
    path, prefix = path.rstrip("/") or "/", prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


@dataclass
class Check:
    """One pod spec under review: its view, the level and the params."""

    pod: workloads.PodSpecView
    level: Level
    params: Params
    ports: list[tuple[int, int]]

    @property
    def restricted(self) -> bool:
        return self.level == "restricted"

    @property
    def security(self) -> dict[str, Any]:
        return _dict(self.pod.spec.get("securityContext"))

    @property
    def windows(self) -> bool:
        return _dict(self.pod.spec.get("os")).get("name") == "windows"

    def containers(self) -> Iterator[workloads.ContainerView]:
        for container in self.pod.containers:
            if not (self.params.exemptImages and container.image
                    and _glob(container.image, self.params.exemptImages)):
                yield container

    def at_pod(self, what: str, fix: str, *tokens: str | int) -> policy.Violation:
        return policy.Violation.at_pod(self.pod, f"{what} ({self.level} level)", fix, *tokens)

    def at(self, container: workloads.ContainerView, what: str, fix: str,
           *tokens: str | int) -> policy.Violation:
        return policy.Violation.at_container(self.pod, container,
                                             f"{what} ({self.level} level)", fix, *tokens)


def _container_security(container: workloads.ContainerView) -> dict[str, Any]:
    return _dict(container.data.get("securityContext"))


Violations = Iterator[policy.Violation]


def check_host_process(c: Check) -> Violations:
    if _dict(c.security.get("windowsOptions")).get("hostProcess") is True:
        yield c.at_pod("Windows HostProcess pods run with host access",
                       "remove securityContext.windowsOptions.hostProcess",
                       "securityContext", "windowsOptions", "hostProcess")
    for container in c.containers():
        options = _dict(_container_security(container).get("windowsOptions"))
        if options.get("hostProcess") is True:
            yield c.at(container, "runs as a Windows HostProcess container",
                       "remove securityContext.windowsOptions.hostProcess",
                       "securityContext", "windowsOptions", "hostProcess")


def check_host_namespaces(c: Check) -> Violations:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if field == "hostNetwork" and c.params.allowHostNetwork:
            continue
        if c.pod.spec.get(field) is True:
            yield c.at_pod(f"{field} shares the node's namespace",
                           f"remove {field} or set it to false", field)


def check_privileged(c: Check) -> Violations:
    for container in c.containers():
        if _container_security(container).get("privileged") is True:
            yield c.at(container, "runs privileged",
                       "remove securityContext.privileged or set it to false",
                       "securityContext", "privileged")


def check_capabilities(c: Check) -> Violations:
    allowed = RESTRICTED_CAPABILITIES if c.restricted else c.params.allowedCapabilities
    must_drop = list(c.params.requiredDropCapabilities)
    if c.restricted and "ALL" not in must_drop:
        must_drop.append("ALL")
    if c.windows:  # the capability controls are Linux-only
        return
    for container in c.containers():
        capabilities = _dict(_container_security(container).get("capabilities"))
        added = [str(a) for a in _list(capabilities.get("add")) if str(a) not in allowed and a]
        if added:
            yield c.at(container, f"adds capabilities {', '.join(added)}",
                       f"add only {', '.join(allowed)} (or ask for {added[0]} to be allowed)",
                       "securityContext", "capabilities", "add")
        dropped = {str(d) for d in _list(capabilities.get("drop"))}
        missing = [d for d in must_drop if d not in dropped]
        if missing:
            yield c.at(container, f"does not drop {', '.join(missing)}",
                       f"set securityContext.capabilities.drop: [{', '.join(missing)}]",
                       "securityContext", "capabilities", "drop")


def check_host_path(c: Check) -> Violations:
    mounts: dict[str, list[tuple[workloads.ContainerView, dict[str, Any]]]] = {}
    for container in c.pod.containers:
        for mount in _list(container.data.get("volumeMounts")):
            if isinstance(mount, dict):
                mounts.setdefault(str(mount.get("name")), []).append((container, mount))
    for index, volume in enumerate(_list(c.pod.spec.get("volumes"))):
        host_path = _dict(volume).get("hostPath") if isinstance(volume, dict) else None
        if host_path is None:
            continue
        name = str(volume.get("name") or index)
        path = str(_dict(host_path).get("path") or "")
        rule = next((r for r in c.params.allowedHostPaths if _under(path, r.pathPrefix)), None)
        if rule is None:
            yield c.at_pod(f"volume {name!r} mounts host path {path or '(empty)'}",
                           "use a persistentVolumeClaim, emptyDir or CSI volume instead",
                           "volumes", index, "hostPath")
            continue
        if rule.readOnly:
            for container, mount in mounts.get(name, []):
                if mount.get("readOnly") is not True:
                    yield c.at(container, f"mounts host path {path} of volume {name!r} writable",
                               f"set readOnly: true on the mount (only read-only mounts of "
                               f"{rule.pathPrefix} are allowed)", "volumeMounts")


def check_host_ports(c: Check) -> Violations:
    for container in c.containers():
        for index, port in enumerate(_list(container.data.get("ports"))):
            host_port = _dict(port).get("hostPort")
            if not host_port:
                continue
            if isinstance(host_port, int) and any(lo <= host_port <= hi for lo, hi in c.ports):
                continue
            allowed = ", ".join(c.params.allowedHostPorts) or "none"
            yield c.at(container, f"uses hostPort {host_port}",
                       f"remove hostPort and expose the port through a Service "
                       f"(allowed host ports: {allowed})", "ports", index, "hostPort")


def _annotation_profile(value: Any) -> str:
    return str(value) if value is not None else ""


def _apparmor_bad(c: Check, profile: dict[str, Any] | None, annotation: str) -> str:
    """The offending profile, or "" when it is allowed."""
    if profile:
        kind = profile.get("type")
        if kind == "Unconfined":
            return "Unconfined"
        if kind == "Localhost":
            name = str(profile.get("localhostProfile") or "")
            return "" if _glob(name, c.params.localhostProfiles) else f"Localhost {name}"
        return ""
    if not annotation or annotation == "runtime/default":
        return ""
    if annotation.startswith("localhost/"):
        name = annotation[len("localhost/"):]
        return "" if _glob(name, c.params.localhostProfiles) else annotation
    return annotation


def check_apparmor(c: Check) -> Violations:
    pod_profile = _dict(c.security.get("appArmorProfile")) or None
    annotations = c.pod.annotations
    for container in c.containers():
        own = _dict(_container_security(container).get("appArmorProfile")) or None
        annotation = _annotation_profile(annotations.get(APPARMOR_ANNOTATION + container.name))
        if own is not None:
            bad = _apparmor_bad(c, own, "")
            tokens: tuple[str | int, ...] = ("securityContext", "appArmorProfile", "type")
        elif annotation:
            bad = _apparmor_bad(c, None, annotation)
            tokens = ()
        else:
            bad = _apparmor_bad(c, pod_profile, "")
            tokens = ()
        if not bad:
            continue
        fix = "use AppArmor profile RuntimeDefault or an allowed Localhost profile"
        if tokens:
            yield c.at(container, f"runs with AppArmor profile {bad}", fix, *tokens)
        elif annotation:
            yield policy.Violation(
                what=f"runs with AppArmor profile {bad} (annotation "
                     f"{APPARMOR_ANNOTATION}{container.name}) ({c.level} level)",
                fix=fix, path=container.pointer, container=container.name, pod=c.pod.pointer)
        else:
            yield c.at(container, f"inherits the pod's AppArmor profile {bad}",
                       fix + " at spec.securityContext.appArmorProfile")


def check_selinux(c: Check) -> Violations:
    def problems(options: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
        kind = options.get("type")
        if kind and kind not in c.params.allowedSELinuxTypes:
            yield ("type", f"sets SELinux type {kind}",
                   f"use one of {', '.join(c.params.allowedSELinuxTypes)} or leave it unset")
        for field in ("user", "role"):
            if options.get(field):
                yield (field, f"sets SELinux {field} {options[field]}",
                       f"remove seLinuxOptions.{field}")

    for field, what, fix in problems(_dict(c.security.get("seLinuxOptions"))):
        yield c.at_pod(f"the pod {what}", fix, "securityContext", "seLinuxOptions", field)
    for container in c.containers():
        options = _dict(_container_security(container).get("seLinuxOptions"))
        for field, what, fix in problems(options):
            yield c.at(container, what, fix, "securityContext", "seLinuxOptions", field)


def check_proc_mount(c: Check) -> Violations:
    for container in c.containers():
        mount = _container_security(container).get("procMount")
        if mount not in (None, "Default"):
            yield c.at(container, f"uses procMount {mount}",
                       "remove securityContext.procMount or set it to Default",
                       "securityContext", "procMount")


def _seccomp_bad(c: Check, profile: dict[str, Any] | None, annotation: str) -> str | None:
    """The offending profile, "" when allowed, None when there is none at all."""
    if profile:
        kind = profile.get("type")
        if kind == "Localhost":
            name = str(profile.get("localhostProfile") or "")
            return "" if _glob(name, c.params.localhostProfiles) else f"Localhost {name}"
        return "" if kind == "RuntimeDefault" else str(kind)
    if not annotation:
        return None
    if annotation in ("runtime/default", "docker/default"):
        return ""
    if annotation.startswith("localhost/"):
        name = annotation[len("localhost/"):]
        return "" if _glob(name, c.params.localhostProfiles) else annotation
    return annotation


def check_seccomp(c: Check) -> Violations:
    if c.windows and c.restricted:
        return
    pod_profile = _dict(c.security.get("seccompProfile")) or None
    pod_annotation = _annotation_profile(c.pod.annotations.get(SECCOMP_POD_ANNOTATION))
    pod_bad = _seccomp_bad(c, pod_profile, pod_annotation)
    fix = "set seccompProfile.type: RuntimeDefault (or an allowed Localhost profile)"
    for container in c.containers():
        own = _dict(_container_security(container).get("seccompProfile")) or None
        annotation = _annotation_profile(
            c.pod.annotations.get(SECCOMP_CONTAINER_ANNOTATION + container.name))
        bad = _seccomp_bad(c, own, annotation)
        if bad:
            tokens = ("securityContext", "seccompProfile", "type") if own else ()
            yield c.at(container, f"runs with seccomp profile {bad}", fix, *tokens)
        elif bad is None and pod_bad:
            yield c.at(container, f"inherits the pod's seccomp profile {pod_bad}",
                       fix + " at spec.securityContext.seccompProfile")
        elif bad is None and pod_bad is None and c.restricted:
            yield c.at(container, "has no seccomp profile",
                       fix + " at spec.securityContext or on the container",
                       "securityContext", "seccompProfile")


def check_sysctls(c: Check) -> Violations:
    for index, sysctl in enumerate(_list(c.security.get("sysctls"))):
        name = str(_dict(sysctl).get("name") or "")
        if not name:
            continue
        if _glob(name, c.params.forbiddenSysctls) or not _glob(name, c.params.allowedSysctls):
            yield c.at_pod(f"sets sysctl {name}, which is not in the allowed set",
                           "remove it, or set it on the node (it is not isolated between pods)",
                           "securityContext", "sysctls", index, "name")


def check_volume_types(c: Check) -> Violations:
    if not c.restricted:
        return
    for index, volume in enumerate(_list(c.pod.spec.get("volumes"))):
        if not isinstance(volume, dict):
            continue
        for source in volume:
            if source != "name" and source not in RESTRICTED_VOLUMES and source != "hostPath":
                yield c.at_pod(f"volume {volume.get('name')!r} is of type {source}",
                               f"use one of {', '.join(RESTRICTED_VOLUMES)}",
                               "volumes", index, source)


def check_privilege_escalation(c: Check) -> Violations:
    if not c.restricted or c.windows:
        return
    for container in c.containers():
        if _container_security(container).get("allowPrivilegeEscalation") is not False:
            yield c.at(container, "does not set allowPrivilegeEscalation: false",
                       "set securityContext.allowPrivilegeEscalation: false",
                       "securityContext", "allowPrivilegeEscalation")


def check_run_as_non_root(c: Check) -> Violations:
    if not c.restricted:
        return
    pod_value = c.security.get("runAsNonRoot")
    if pod_value is False:
        yield c.at_pod("sets runAsNonRoot: false", "set securityContext.runAsNonRoot: true",
                       "securityContext", "runAsNonRoot")
    for container in c.containers():
        value = _container_security(container).get("runAsNonRoot")
        if value is False or (value is None and pod_value is not True):
            yield c.at(container, "may run as root (runAsNonRoot is not true)",
                       "set securityContext.runAsNonRoot: true on the pod or the container",
                       "securityContext", "runAsNonRoot")


def check_run_as_user(c: Check) -> Violations:
    if not c.restricted:
        return
    if c.security.get("runAsUser") == 0:
        yield c.at_pod("sets runAsUser: 0 (root)", "use a non-zero user id",
                       "securityContext", "runAsUser")
    for container in c.containers():
        if _container_security(container).get("runAsUser") == 0:
            yield c.at(container, "sets runAsUser: 0 (root)", "use a non-zero user id",
                       "securityContext", "runAsUser")


CHECKS: dict[str, Callable[[Check], Violations]] = {
    "hostProcess": check_host_process,
    "hostNamespaces": check_host_namespaces,
    "privileged": check_privileged,
    "capabilities": check_capabilities,
    "hostPathVolumes": check_host_path,
    "hostPorts": check_host_ports,
    "appArmor": check_apparmor,
    "seLinux": check_selinux,
    "procMount": check_proc_mount,
    "seccomp": check_seccomp,
    "sysctls": check_sysctls,
    "volumeTypes": check_volume_types,
    "privilegeEscalation": check_privilege_escalation,
    "runAsNonRoot": check_run_as_non_root,
    "runAsUser": check_run_as_user,
}


def level_for(params: Params, namespace: str) -> Level:
    for entry in params.namespaces:
        if _glob(namespace, entry.namespaces):
            return entry.level
    return params.level


class PodSecurity(policy.ValidatingPolicy[Params]):
    """Pod Security Standards (baseline or restricted per namespace) on every pod template."""

    name = "pod-security"
    blocking = False

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        unknown = [c for c in params.disabledControls if c not in CHECKS]
        if unknown:
            raise ValueError(f"disabledControls: unknown control {unknown[0]!r}; "
                             f"known: {', '.join(CONTROLS)}")
        self.host_ports = parse_port_ranges(params.allowedHostPorts)

    def validate(self, workload: workloads.Workload) -> Violations:
        # The request's namespace is authoritative; metadata may omit it on CREATE.
        level = level_for(self.params, workload.context.namespace or workload.namespace)
        for pod in workload.pods:
            check = Check(pod, level, self.params, self.host_ports)
            for control, run in CHECKS.items():
                if control not in self.params.disabledControls:
                    yield from run(check)

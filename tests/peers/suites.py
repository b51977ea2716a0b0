"""The peers' own test cases (Kyverno, Gatekeeper) as mlgate cases, and how to run them.

`../shared/peer-suites/` holds verbatim copies of both projects' test suites (see its
SOURCES.md). Each case becomes a `Case`: the object, the operation, the verdict the peer
expects, and the mlgate configuration equivalent to the peer's policy and parameters.
Cases a peer covers but no mlgate policy does (CPU/memory maximums, Namespace labels, image
configs from a registry) carry a `scope` reason and are counted, not compared.

Run `python -m tests.peers.suites` for the agreement table.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from webhook import admission, config, engine, plugins

JSON = dict[str, Any]
PEERS = Path(__file__).resolve().parents[2].parent / "shared" / "peer-suites"

# Kyverno folder -> (mlgate policy, settings equal to the Kyverno policy).
# The baseline policies are each one PSS control; mlgate runs the whole baseline level.
# Kyverno's restrict-sysctls still has the five sysctls of Kubernetes 1.22 (the PSS lists
# ten): mlgate's allowedSysctls is set to Kyverno's five for that suite.
KYVERNO_SYSCTLS = ["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                   "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                   "net.ipv4.ping_group_range"]
BASELINE: JSON = {"mode": "enforce", "params": {"level": "baseline"}}
KYVERNO: dict[str, tuple[str, JSON]] = {
    "disallow-privileged-containers": ("pod-security", BASELINE),
    "disallow-host-namespaces": ("pod-security", BASELINE),
    "disallow-host-path": ("pod-security", BASELINE),
    "disallow-host-ports": ("pod-security", BASELINE),
    "disallow-capabilities": ("pod-security", BASELINE),
    "disallow-proc-mount": ("pod-security", BASELINE),
    "disallow-selinux": ("pod-security", BASELINE),
    "restrict-sysctls": ("pod-security", {"mode": "enforce", "params": {
        "level": "baseline", "allowedSysctls": KYVERNO_SYSCTLS}}),
    "restrict-seccomp": ("pod-security", BASELINE),
    "restrict-apparmor-profiles": ("pod-security", BASELINE),
    # Kyverno requires requests.cpu, requests.memory and limits.memory (no CPU limit).
    "require-pod-requests-limits": ("require-limits", {"mode": "enforce", "params": {
        "resources": ["memory"]}}),
    "disallow-latest-tag": ("disallow-latest-tag", {"mode": "enforce"}),
    # Kyverno: at least one probe of any kind on every spec.containers entry, on bare Pods.
    "require-probes": ("require-probes", {"mode": "enforce", "params": {
        "probes": ["readinessProbe", "livenessProbe", "startupProbe"], "require": "any",
        "servingContainers": "all", "kinds": ["Pod"]}}),
    # Kyverno's "?*" (non-empty) is required-labels' default pattern.
    "require-labels": ("required-labels", {"mode": "enforce", "params": {
        "labels": [{"key": "app.kubernetes.io/name"}]}}),
    "restrict-image-registries": ("allowed-registries", {"mode": "enforce", "params": {
        "registries": ["eu.foo.io/*", "bar.io/*"]}}),
}
KYVERNO_OUT_OF_SCOPE = {
    "check-nvidia-gpu": "needs each image's config (Env) from a registry, mocked by the suite",
    "check-nvidia-gpu-vpol": "needs each image's config (Env) from a registry",
}


@dataclass
class Case:
    """One peer test case with the verdict the peer expects and the mlgate config to run."""

    suite: str  # kyverno/<folder> or gatekeeper/<folder>
    name: str
    obj: JSON
    expected: bool  # True: the peer reports a violation
    policy: str
    settings: JSON
    operation: str = "CREATE"
    scope: str = ""  # why the case is not compared ("" = compared)
    count: int | None = None  # the exact number of violations the peer expects, if it says


def _documents(path: Path) -> list[JSON]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]


# -- Kyverno ---------------------------------------------------------------------------
def kyverno_cases(root: Path = PEERS) -> Iterator[Case]:
    for folder in sorted(p for p in (root / "kyverno").iterdir() if p.is_dir()):
        test_dir = folder / ".kyverno-test"
        manifest = yaml.safe_load((test_dir / "kyverno-test.yaml").read_text(encoding="utf-8"))
        objects: dict[tuple[str, str], JSON] = {}
        for resource_file in manifest.get("resources", []):
            for doc in _documents(test_dir / resource_file):
                objects[(doc.get("kind", ""), doc["metadata"]["name"])] = doc
        verdicts: dict[tuple[str, str], bool] = {}
        for result in manifest.get("results", []):
            names = result.get("resources") or [result.get("resource")]
            for name in names:
                key = (result["kind"], name)
                verdicts[key] = verdicts.get(key, False) or result["result"] == "fail"
        policy, settings = KYVERNO.get(folder.name, ("", {}))
        scope = KYVERNO_OUT_OF_SCOPE.get(folder.name, "")
        for (kind, name), fails in sorted(verdicts.items()):
            yield Case(f"kyverno/{folder.name}", f"{kind} {name}", objects[(kind, name)], fails,
                       policy, settings, scope=scope)


# -- Gatekeeper ------------------------------------------------------------------------
# Every Gatekeeper PSP template skips UPDATE requests (`lib.exclude_update`); the
# equivalent mlgate setting is `match.operations: [CREATE]`.
CREATE_ONLY = {"operations": ["CREATE"]}


def _pss(params: JSON, extra: JSON | None = None) -> tuple[str, JSON]:
    mlgate: JSON = {"level": "baseline"}
    if params.get("exemptImages"):
        mlgate["exemptImages"] = list(params["exemptImages"])
    mlgate.update(extra or {})
    return "pod-security", {"mode": "enforce", "params": mlgate, "match": CREATE_ONLY}


def _host_ports(params: JSON) -> tuple[str, JSON]:
    extra: JSON = {"allowHostNetwork": bool(params.get("hostNetwork", False))}
    if "min" in params and "max" in params:
        extra["allowedHostPorts"] = [f"{params['min']}-{params['max']}"]
    return _pss(params, extra)


def _profiles(params: JSON) -> JSON:
    names = [p[len("localhost/"):] for p in params.get("allowedProfiles", [])
             if p.startswith("localhost/")]
    return {"localhostProfiles": names}


def _sysctls(params: JSON) -> tuple[str, JSON]:
    return _pss(params, {"allowedSysctls": params.get("allowedSysctls", ["*"]),
                         "forbiddenSysctls": params.get("forbiddenSysctls", [])})


def _capabilities(params: JSON) -> tuple[str, JSON]:
    return _pss(params, {"allowedCapabilities": params.get("allowedCapabilities", []),
                         "requiredDropCapabilities": params.get("requiredDropCapabilities", [])})


def _limits(params: JSON) -> tuple[str, JSON]:
    resources = [r for r in ("cpu", "memory") if str(params.get(r, "")) != "-1"]
    return "require-limits", {"mode": "enforce", "params": {"resources": resources}}


def _resources(params: JSON) -> tuple[str, JSON]:
    return "require-limits", {"mode": "enforce",
                              "params": {"resources": list(params.get("limits", []))}}


def _tags(params: JSON) -> tuple[str, JSON]:
    return "disallow-latest-tag", {"mode": "enforce", "params": {
        "disallowedTags": list(params.get("tags", ["latest"])), "requireTag": True}}


def _repo_glob(prefix: str) -> str:
    """Gatekeeper's repos are prefixes of the image string; mlgate matches the resolved
    name, where a name without a registry host is on docker.io."""
    first = prefix.split("/", 1)[0]
    host = "/" in prefix and ("." in first or ":" in first or first == "localhost")
    return (prefix if host else "docker.io/" + prefix) + "*"


def _repos(params: JSON) -> tuple[str, JSON]:
    return "allowed-registries", {"mode": "enforce", "params": {
        "registries": [_repo_glob(r) for r in params.get("repos", [])]}}


def _labels(params: JSON) -> tuple[str, JSON]:
    # Without allowedRegex Gatekeeper wants the key with any value, even an empty one.
    labels = [{"key": item["key"], "pattern": item.get("allowedRegex", ".*")}
              for item in params.get("labels", [])]
    return "required-labels", {"mode": "enforce", "params": {"labels": labels}}


def _probes(params: JSON) -> tuple[str, JSON]:
    # probeTypes (tcpSocket, httpGet, exec) has no mlgate param: every handler counts.
    return "require-probes", {"mode": "enforce", "match": CREATE_ONLY, "params": {
        "probes": list(params.get("probes", [])), "require": "all", "servingContainers": "all",
        "kinds": ["Pod"]}}


GATEKEEPER: dict[str, Callable[[JSON], tuple[str, JSON]]] = {
    "privileged-containers": _pss,
    "host-namespaces": _pss,
    "host-filesystem": lambda p: _pss(p, {"allowedHostPaths": p.get("allowedHostPaths", [])}),
    "host-network-ports": _host_ports,
    "capabilities": _capabilities,
    "proc-mount": _pss,
    "seccomp": lambda p: _pss(p, _profiles(p)),
    "apparmor": lambda p: _pss(p, _profiles(p)),
    "forbidden-sysctls": _sysctls,
    "containerlimits": _limits,
    "containerresources": _resources,
    "containerrequests": _resources,
    "disallowedtags": _tags,
    "allowedrepos": _repos,
    "requiredlabels": _labels,
    "requiredprobes": _probes,
}


# Suites no mlgate policy covers at all (their cases are counted, never compared).
OUT_OF_SCOPE_SUITES = {"gatekeeper/containerrequests"}


def _gatekeeper_scope(folder: str, constraint: JSON, obj: JSON, params: JSON) -> str:
    kinds = [k for m in constraint["spec"].get("match", {}).get("kinds", [])
             for k in m.get("kinds", [])]
    if "Namespace" in kinds:
        return "labels on Namespaces: mlgate only sees workload kinds"
    if folder == "disallowedtags" and any(
            c.get("image") in params.get("exemptImages", [])
            for key in ("containers", "initContainers", "ephemeralContainers")
            for c in (obj.get("spec") or {}).get(key, [])):
        return "exemptImages: disallow-latest-tag exempts by namespace or selector, not image"
    if folder == "containerrequests":
        return "requests presence and maximums: mlgate fills requests in (default-resources)"
    if folder == "containerlimits" and _above_maximum(obj, params):
        return "CPU/memory maximums: left to the in-tree LimitRange"
    if (folder == "containerresources" and params.get("requests")
            and _missing_requests(obj, params["requests"])):
        return "requests presence: mlgate fills requests in (default-resources)"
    return ""


def _quantity(value: Any) -> float | None:
    from webhook import quantity

    parsed = quantity.parse(str(value))
    return None if parsed is None else float(parsed)


def _above_maximum(obj: JSON, params: JSON) -> bool:
    for c in (obj.get("spec") or {}).get("containers", []):
        limits = (c.get("resources") or {}).get("limits") or {}
        for resource in ("cpu", "memory"):
            cap, value = str(params.get(resource, "-1")), limits.get(resource)
            if cap != "-1" and value is not None:
                got, most = _quantity(value), _quantity(cap)
                if got is not None and most is not None and got > most:
                    return True
    return False


def _missing_requests(obj: JSON, resources: list[str]) -> bool:
    containers = (obj.get("spec") or {}).get("containers", [])
    return any(r not in ((c.get("resources") or {}).get("requests") or {})
               for c in containers for r in resources)


def _expects_violation(assertions: list[JSON]) -> bool:
    for assertion in assertions:
        value = assertion.get("violations")
        if value is True or value == "yes" or (isinstance(value, int) and value > 0):
            return True
    return False


def _expected_count(assertions: list[JSON]) -> int | None:
    """`violations: <n>` without a message filter: the total the peer expects."""
    for assertion in assertions:
        value = assertion.get("violations")
        if isinstance(value, int) and not isinstance(value, bool) and "message" not in assertion:
            return value
    return None


def gatekeeper_cases(root: Path = PEERS) -> Iterator[Case]:
    for folder in sorted(p for p in (root / "gatekeeper").iterdir() if p.is_dir()):
        suite = yaml.safe_load((folder / "suite.yaml").read_text(encoding="utf-8"))
        for test in suite["tests"]:
            constraint = yaml.safe_load((folder / test["constraint"]).read_text(encoding="utf-8"))
            params = constraint["spec"].get("parameters") or {}
            policy, settings = GATEKEEPER[folder.name](params)
            for case in test["cases"]:
                doc = yaml.safe_load((folder / case["object"]).read_text(encoding="utf-8"))
                operation = "CREATE"
                if doc.get("kind") == "AdmissionReview":
                    operation = doc["request"]["operation"]
                    doc = doc["request"]["object"]
                expected = _expects_violation(case["assertions"])
                scope = _gatekeeper_scope(folder.name, constraint, doc, params)
                if scope.startswith("exemptImages") and expected:
                    scope = ""  # another image violates anyway: the verdict is comparable
                yield Case(f"gatekeeper/{folder.name}", f"{test['name']}: {case['name']}", doc,
                           expected, policy, copy.deepcopy(settings), operation, scope,
                           _expected_count(case["assertions"]))


def all_cases(root: Path = PEERS) -> list[Case]:
    return [*kyverno_cases(root), *gatekeeper_cases(root)]


# -- running ---------------------------------------------------------------------------
def build(case: Case, catalogue: plugins.Catalogue) -> engine.Engine:
    """An engine with only the case's policy on, nothing exempt (peers exempt nothing)."""
    policies: JSON = {name: {"mode": "off"} for name in config.DEFAULT_POLICIES}
    policies[case.policy] = case.settings
    cfg = config.from_mapping({"policies": policies, "exemptions": {"namespaces": []}},
                              environ={})
    return engine.Engine.build(cfg, catalogue)


def verdict(case: Case, catalogue: plugins.Catalogue) -> tuple[bool, list[str]]:
    """(mlgate reports a violation, the denial messages), validating as the API server would."""
    eng = build(case, catalogue)
    request = admission.synthetic_request(copy.deepcopy(case.obj), user=engine.CHECK_USER,
                                          uid="offline", namespace="default")
    request = dataclasses.replace(request, operation=case.operation)
    decision = asyncio.run(eng.evaluate(request, engine.VALIDATE))
    messages = [f.message for f in decision.findings if f.mode == "enforce"
                and not f.preexisting]
    errors = [f.message for f in decision.findings if f.error]
    if errors:
        raise AssertionError(f"{case.suite} {case.name}: policy error: {errors}")
    return not decision.allowed, messages


@dataclass
class Tally:
    compared: int = 0
    agreed: int = 0
    out_of_scope: int = 0
    missing_policy: str = ""
    disagreements: list[str] = dataclasses.field(default_factory=list)

    def figure(self) -> str:
        if self.missing_policy:
            return f"not run ({self.missing_policy} does not exist yet)"
        text = f"{self.agreed}/{self.compared}"
        if self.out_of_scope:
            text += f" (+{self.out_of_scope} out of scope)"
        return text


def agreement(cases: list[Case], catalogue: plugins.Catalogue) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for case in cases:
        tally = tallies.setdefault(case.suite, Tally())
        if case.scope or not case.policy:
            tally.out_of_scope += 1
            continue
        if case.policy not in catalogue.policies:
            tally.missing_policy = case.policy
            continue
        got, messages = verdict(case, catalogue)
        tally.compared += 1
        count_ok = case.count is None or len(messages) == case.count
        if got == case.expected and count_ok:
            tally.agreed += 1
        else:
            expected = "violation" if case.expected else "no violation"
            if case.count is not None:
                expected = f"{case.count} violation(s)"
            tally.disagreements.append(f"{case.name}: peer expects {expected}; mlgate "
                                       f"{'denies: ' + '; '.join(messages) if got else 'allows'}")
    return tallies


def main() -> int:
    if not PEERS.is_dir():
        print(f"{PEERS} is absent", file=sys.stderr)
        return 2
    tallies = agreement(all_cases(), plugins.discover())
    width = max(len(s) for s in tallies)
    print(f"{'suite':<{width}}  agreement")
    for suite, tally in tallies.items():
        print(f"{suite:<{width}}  {tally.figure()}")
        for line in tally.disagreements:
            print(f"{'':<{width}}    - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

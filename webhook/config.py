"""The configuration a platform engineer writes (`mlgate.yaml`), validated at load.

Every error names the key path (`policies.require-limits.mode: ...`). Values come from,
in order: the built-in defaults, the YAML file, then `MLGATE_*` environment variables
(`MLGATE_POLICIES__REQUIRE_LIMITS__MODE=warn`: `__` separates keys, `_` and `-` match
each other, values are read as YAML). The built-in default policies stay on unless the
file turns them off with `mode: off`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from webhook import dra as dra_settings
from webhook import errors, exceptions, kind_table, schema, workloads
from webhook.audit import settings as audit_settings
from webhook.signatures import settings as registry_settings

ENV_PREFIX = "MLGATE_"
# Variables with the prefix that are settings of the process, not of the config file.
PROCESS_VARIABLES = {"MLGATE_CONFIG", "MLGATE_NAMESPACE", "MLGATE_DATA_DIR", "MLGATE_LOG_LEVEL"}

def own_namespace() -> str:
    """The namespace mlgate runs in (exempt by default, so it can never lock itself out)."""
    return os.environ.get("MLGATE_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "mlgate-system"


class NamespaceMatch(schema.Model):
    include: list[str] = ["*"]
    exclude: list[str] = []

    def matches(self, namespace: str) -> bool:
        return (workloads.glob_matcher(tuple(self.include))(namespace)
                and not workloads.glob_matcher(tuple(self.exclude))(namespace))


class Match(schema.Model):
    """Which requests a policy sees. Every condition must hold."""

    # None: the policy's `default_kinds`, else every kind of the table with pod specs
    kinds: list[kind_table.KindName] | None = None
    namespaces: NamespaceMatch = NamespaceMatch()
    objectSelector: schema.LabelSelector | None = None
    operations: list[schema.Operation] = ["CREATE", "UPDATE"]

    def matches_kind(self, group: str, kind: str,
                     default: Sequence[str] | None = None) -> bool:
        """`kinds` when set, else `default` (the policy's `default_kinds`) when given,
        else every kind with pod specs: kinds without (DRA claims) are judged only by
        the policies that name them."""
        names = self.kinds if self.kinds is not None else default
        if names is None:
            spec = kind_table.lookup(group, kind)
            return spec is None or spec.pod_specs
        return kind in names or f"{group}/{kind}" in names


class PolicySettings(schema.Model):
    """One policy instance: `policies.<name>`. `uses` runs another policy under this name
    (a second `cel` with its own rules, mode, match and failure mode, say)."""

    uses: str | None = None  # the policy this instance runs; None: the one named <name>
    mode: schema.Mode | None = None  # None: the policy's default mode
    params: dict[str, Any] = {}
    match: Match = Match()
    failure: schema.Failure = "fail"
    timeout: schema.Duration = 2.0


class Exemptions(schema.Model):
    """Requests that are never evaluated at all."""

    namespaces: list[str] = Field(default_factory=lambda: ["kube-system", own_namespace()])
    users: list[str] = []
    groups: list[str] = []
    kinds: list[kind_table.KindName] = []

    def exempts(self, namespace: str, user: str, groups: tuple[str, ...], group: str,
                kind: str) -> str | None:
        """The reason a request is exempt, or None."""
        if namespace and workloads.glob_matcher(tuple(self.namespaces))(namespace):
            return f"namespace {namespace} is exempt"
        if user and user in self.users:
            return f"user {user} is exempt"
        for g in groups:
            if g in self.groups:
                return f"group {g} is exempt"
        if kind in self.kinds or f"{group}/{kind}" in self.kinds:
            return f"kind {kind} is exempt"
        return None


DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "gpu-tolerations": {"mode": "enforce"},
    "default-resources": {"mode": "enforce"},
    "require-limits": {"mode": "enforce"},
}


PolicyExceptions = dict[str, exceptions.PolicyException]  # (a field below is named exceptions)


class ConnectionSettings(schema.Model):
    """Limits on each client connection (`webhook.connections`; read at start)."""

    maxHeaderBytes: int = Field(64 * 1024, ge=4096)  # request line + headers; 431 past it
    headerTimeout: schema.Duration = 5.0  # first byte of a request to the end of its headers
    bodyTimeout: schema.Duration = 10.0  # end of the headers to the end of the body
    firstRequestTimeout: schema.Duration = 10.0  # TLS handshake done to a request's first byte
    # Keep-alive between requests (whole seconds, up). Longer than the API server keeps idle
    # connections (client-go: 90 s): were mlgate to close first, a request sent on a
    # connection as it closes fails with EOF and a POST is not retried, so the failure policy
    # refuses a create (seen through the real API server with 5 s: 1 create in ~1,000).
    idleTimeout: schema.Duration = 120.0
    maxConnections: int = Field(1000, gt=0)  # open at once; past it, new ones are closed


class Config(schema.Model):
    exemptions: Exemptions = Field(default_factory=Exemptions)
    policyPaths: list[str] = []
    policies: dict[str, PolicySettings] = {}
    mutateOnUpdate: list[kind_table.KindName] = []  # kinds whose pod template UPDATE may change
    deadline: schema.Duration = 4.0  # whole request, kept below the webhook timeout (5s by default)
    maxRequestBytes: int = Field(8 * 1024 * 1024, gt=0)
    dra: dra_settings.Settings = Field(default_factory=dra_settings.Settings)
    maxInFlight: int = Field(256, gt=0)  # admission requests evaluated at once; 503 past it
    # Admission's own threads for the sync methods of blocking policies (read at start);
    # nothing else runs there, so no audit or journal work can make a policy wait.
    policyThreads: int = Field(16, gt=0, le=256)
    registries: registry_settings.Registries = Field(
        default_factory=registry_settings.Registries)
    connections: ConnectionSettings = Field(default_factory=ConnectionSettings)
    journal: audit_settings.JournalSettings = Field(default_factory=audit_settings.JournalSettings)
    audit: audit_settings.AuditSettings = Field(default_factory=audit_settings.AuditSettings)
    exceptions: PolicyExceptions = {}  # named, with owner and expiry
    exceptionsRequireAnnotation: bool = False  # apply only where mlgate.io/exception names one


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def describe(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the key path."""
    lines = []
    for error in exc.errors():
        where = _location(tuple(error["loc"]))
        if prefix:
            where = f"{prefix}.{where}" if where != "(top level)" else prefix
        # A validator's own ValueError reads "Value error, <message>": the message suffices.
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


def _set_path(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for index, key in enumerate(keys):
        existing = next((k for k in target if _normal(k) == _normal(key)), None)
        if existing is None:
            # Field names are camelCase; policy and exception names are kebab-case.
            parent_is_named = index > 0 and _normal(keys[index - 1]) in ("policies",
                                                                           "exceptions")
            if parent_is_named:
                existing = key.lower().replace("_", "-")
            else:
                head, *rest = key.lower().split("_")
                existing = head + "".join(part.title() for part in rest)
        if index == len(keys) - 1:
            target[existing] = value
            return
        child = target.get(existing)
        if not isinstance(child, dict):
            child = target[existing] = {}
        target = child


def apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay `MLGATE_*` variables onto the raw config mapping."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in PROCESS_VARIABLES:
            continue
        keys = [k for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys:
            continue
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError as exc:
            raise errors.ConfigError(f"environment variable {name}: not valid YAML: {exc}") from exc
        _set_path(data, keys, value)
    return data


def from_mapping(data: Any, environ: Mapping[str, str] | None = None) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise errors.ConfigError("the configuration must be a YAML mapping at the top level")
    data = apply_environment(dict(data), os.environ if environ is None else environ)
    policies = {name: dict(settings) for name, settings in DEFAULT_POLICIES.items()}
    user_policies = data.get("policies") or {}
    if not isinstance(user_policies, dict):
        raise errors.ConfigError("policies: must be a mapping of policy name to settings")
    for name, settings in user_policies.items():
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise errors.ConfigError(f"policies.{name}: must be a mapping (mode, params, ...)")
        policies[str(name)] = settings
    data["policies"] = policies
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise errors.ConfigError(describe(exc)) from exc
    problems = exceptions.check_policies(cfg.exceptions, cfg.policies)
    problems += [f"exceptions.{name}: a name must not contain a comma or spaces (the "
                 f"{exceptions.ANNOTATION} annotation lists names separated by commas)"
                 for name in cfg.exceptions if not name or "," in name or " " in name]
    if problems:
        raise errors.ConfigError("; ".join(problems))
    return cfg


def load(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, overlay the environment and validate. No file: the built-in defaults."""
    if path is None:
        return from_mapping({}, environ)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        cfg = from_mapping(data, environ)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{path}: {exc}") from exc
    # Relative policy directories are relative to the file that names them, not to
    # wherever the command happens to run.
    base = Path(path).resolve().parent
    cfg.policyPaths = [str(base / p) if not Path(p).is_absolute() else p
                       for p in cfg.policyPaths]
    return cfg

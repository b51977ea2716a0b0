"""The `registries:` section of mlgate.yaml, shared by every policy that talks to registries.

Credentials are a dockerconfigjson file (`~/.docker/config.json` shape) or the Kubernetes
Secret of type `kubernetes.io/dockerconfigjson` that holds one, as mounted or as a manifest.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from webhook import errors, schema


class CacheSettings(schema.Model):
    """How long registry answers are trusted, and how many are kept."""

    digestTTL: schema.Duration = Field(60.0, description="tag -> digest answers")
    verifiedTTL: schema.Duration = Field(600.0, description="verified (digest, rule) results")
    negativeTTL: schema.Duration = Field(10.0, description="failed lookups and verifications")
    maxEntries: int = Field(10_000, gt=0, description="per cache; least recently used go first")


class Registries(schema.Model):
    """How mlgate reaches OCI registries."""

    credentials: str | None = Field(
        None, description="dockerconfigjson file, or a Secret manifest holding one")
    insecure: list[str] = Field(
        default_factory=list, description="registries reached over plain HTTP (local only)")
    caBundle: str | None = Field(None, description="extra CA certificates (PEM) for registry TLS")
    trustedRoot: str | None = Field(
        None, description="Sigstore trusted_root.json (private Sigstore); default: production")
    deadline: schema.Duration = Field(
        1.5, description="all registry work of one request; below the policy timeout")
    cache: CacheSettings = CacheSettings()

    def is_insecure(self, registry: str) -> bool:
        return registry in self.insecure


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"{where}.auth is not base64 of user:password") from exc
    return user, password


def _registry_key(host: str) -> str:
    host = host.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def parse_credentials(data: Any, source: str) -> dict[str, tuple[str, str]]:
    """registry host -> (user, password), from a dockerconfigjson mapping or a Secret."""
    if isinstance(data, dict) and data.get("kind") == "Secret":
        encoded = (data.get("data") or {}).get(".dockerconfigjson")
        if encoded is None:
            raise errors.ConfigError(f"{source}: the Secret has no data[.dockerconfigjson]; use "
                                     f"a Secret of type kubernetes.io/dockerconfigjson")
        try:
            data = json.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise errors.ConfigError(f"{source}: data[.dockerconfigjson] is not base64 JSON"
                                     ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("auths"), dict):
        raise errors.ConfigError(f"{source}: not a dockerconfigjson ({{\"auths\": {{...}}}})")
    found: dict[str, tuple[str, str]] = {}
    for host, entry in data["auths"].items():
        where = f"{source}: auths[{host!r}]"
        if not isinstance(entry, dict):
            raise errors.ConfigError(f"{where} must be a mapping")
        if entry.get("auth"):
            found[_registry_key(host)] = _decode_auth(str(entry["auth"]), where)
        elif entry.get("username") is not None:
            found[_registry_key(host)] = (str(entry["username"]), str(entry.get("password", "")))
    return found


def load_credentials(path: str | None) -> dict[str, tuple[str, str]]:
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"registries.credentials: cannot read {path}: {exc.strerror}"
                                 ) from exc
    try:
        data = yaml.safe_load(text)  # JSON is YAML; a Secret manifest may be either
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"registries.credentials: {path} is not JSON or YAML") from exc
    return parse_credentials(data, f"registries.credentials {path}")

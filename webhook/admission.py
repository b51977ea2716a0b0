"""The AdmissionReview wire format (admission.k8s.io v1 and v1beta1).

`parse` turns a request body into a `Request` (one type for both versions) or raises
`BadReview` with a one-line reason and the HTTP status to answer. `respond` turns a
verdict into the AdmissionReview the API server expects, in the version it came in:
uid echoed, base64 JSONPatch, warnings within the API server's caps, audit annotation
keys that are valid qualified names.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook import errors, kind_table

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
DEFAULT_MAX_BODY = 8 * 1024 * 1024

# The API server truncates what it logs and returns to kubectl; stay inside its limits.
MAX_WARNING_CHARS = 256
MAX_WARNINGS_TOTAL = 4096
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class BadReview(errors.MlgateError):
    """The body is not an AdmissionReview this server can answer (HTTP 4xx)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Request:
    """One admission request, normalised from either wire version."""

    uid: str
    api_version: str
    group: str
    version: str
    kind: str
    resource: str
    sub_resource: str
    name: str
    namespace: str
    operation: str
    user: str
    groups: tuple[str, ...]
    dry_run: bool
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)  # the `request` dict, for CEL


def synthetic_request(obj: dict[str, Any], *, user: str, uid: str,
                      namespace: str = "") -> Request:
    """A dry-run CREATE for an object that did not come through the API server: a manifest
    read by `mlgate check` or `mlgate test`, or an object the cluster scan listed.

    The object's own namespace wins over `namespace`; cluster-scoped kinds get none.
    """
    api_version = str(obj.get("apiVersion") or "")
    group, version = kind_table.group_of(api_version), api_version.rpartition("/")[2]
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    entry = kind_table.lookup(group, kind)
    cluster_scoped = entry is not None and entry.kind.startswith("Cluster")
    ns = "" if cluster_scoped else str(meta.get("namespace") or namespace)
    name = str(meta.get("name") or "")
    raw = {"uid": uid, "operation": "CREATE", "namespace": ns, "name": name, "object": obj,
           "dryRun": True, "kind": {"group": group, "version": version, "kind": kind},
           "userInfo": {"username": user}}
    return Request(
        uid=uid, api_version="admission.k8s.io/v1", group=group, version=version, kind=kind,
        resource=entry.resource if entry else "", sub_resource="", name=name, namespace=ns,
        operation="CREATE", user=user, groups=(), dry_run=True, object=obj, old_object=None,
        raw=raw)


def _string(value: Any, where: str, required: bool = False) -> str:
    if value is None:
        if required:
            raise BadReview(f"{where} is required")
        return ""
    if not isinstance(value, str):
        raise BadReview(f"{where} must be a string, got {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadReview(f"{where} must be an object or null, got {type(value).__name__}")
    return value


def parse(body: bytes, content_type: str | None = None,
          max_bytes: int = DEFAULT_MAX_BODY) -> Request:
    """Parse and check an AdmissionReview request body."""
    if content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise BadReview(f"content type must be application/json, got {media_type or 'none'!r}",
                            415)
    if len(body) > max_bytes:
        raise BadReview(f"request body is {len(body)} bytes, over the limit of {max_bytes}", 413)
    try:
        review = orjson.loads(body)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadReview(f"body is not valid JSON: {reason}") from exc
    if not isinstance(review, dict):
        raise BadReview("body must be a JSON object (an AdmissionReview)")
    api_version = review.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise BadReview(f"apiVersion must be one of {', '.join(API_VERSIONS)}, got {api_version!r}")
    if review.get("kind") != "AdmissionReview":
        raise BadReview(f"kind must be AdmissionReview, got {review.get('kind')!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("request is missing or not an object")
    uid = _string(request.get("uid"), "request.uid", required=True)
    if not uid:
        raise BadReview("request.uid is empty")
    gvk = request.get("kind")
    if not isinstance(gvk, dict):
        raise BadReview("request.kind must be an object {group, version, kind}")
    resource = request.get("resource")
    resource = resource if isinstance(resource, dict) else {}
    operation = _string(request.get("operation"), "request.operation", required=True)
    if operation not in OPERATIONS:
        raise BadReview(f"request.operation must be one of {', '.join(OPERATIONS)}, "
                        f"got {operation!r}")
    user_info = request.get("userInfo")
    user_info = user_info if isinstance(user_info, dict) else {}
    groups = user_info.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise BadReview("request.userInfo.groups must be a list of strings")
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise BadReview("request.dryRun must be a boolean")
    obj = _object(request.get("object"), "request.object")
    old = _object(request.get("oldObject"), "request.oldObject")
    if operation in ("CREATE", "UPDATE") and obj is None:
        raise BadReview(f"request.object is required for {operation}")
    if operation == "UPDATE" and old is None:
        raise BadReview("request.oldObject is required for UPDATE")
    return Request(
        uid=uid,
        api_version=api_version,
        group=_string(gvk.get("group"), "request.kind.group"),
        version=_string(gvk.get("version"), "request.kind.version"),
        kind=_string(gvk.get("kind"), "request.kind.kind", required=True),
        resource=_string(resource.get("resource"), "request.resource.resource"),
        sub_resource=_string(request.get("subResource"), "request.subResource"),
        name=_string(request.get("name"), "request.name"),
        namespace=_string(request.get("namespace"), "request.namespace"),
        operation=operation,
        user=_string(user_info.get("username"), "request.userInfo.username"),
        groups=tuple(groups),
        dry_run=dry_run,
        object=obj,
        old_object=old,
        raw=request,
    )


def cap_warnings(warnings: list[str]) -> list[str]:
    """Keep each warning within 256 characters and all of them within 4096."""
    capped: list[str] = []
    total = 0
    for warning in warnings:
        text = " ".join(warning.split())  # one line each, as kubectl prints them
        if len(text) > MAX_WARNING_CHARS:
            text = text[: MAX_WARNING_CHARS - 3] + "..."
        if total + len(text) > MAX_WARNINGS_TOTAL:
            break
        capped.append(text)
        total += len(text)
    return capped


def audit_key(key: str) -> str:
    """Turn `key` into a valid audit annotation key (a qualified name without prefix)."""
    cleaned = re.sub(r"[^-A-Za-z0-9_.]", "-", key).strip("-_.")[:63].strip("-_.")
    if not _QUALIFIED_NAME.match(cleaned):
        raise ValueError(f"cannot make an audit annotation key from {key!r}")
    return cleaned


def respond(
    request_api_version: str,
    uid: str,
    allowed: bool,
    *,
    message: str = "",
    code: int = 403,
    reason: str = "Forbidden",
    patch: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
    audit_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The AdmissionReview response body for one verdict."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "message": message, "reason": reason}
    elif message:
        response["status"] = {"code": 200, "message": message}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if warnings:
        capped = cap_warnings(warnings)
        if capped:
            response["warnings"] = capped
    if audit_annotations:
        response["auditAnnotations"] = {audit_key(k): str(v) for k, v in audit_annotations.items()}
    return {"apiVersion": request_api_version, "kind": "AdmissionReview", "response": response}

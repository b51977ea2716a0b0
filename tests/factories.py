"""Factories for test inputs: AdmissionReviews as kube-apiserver sends them, and objects."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from webhook import kind_table

GVR_VERSION = {"": "v1", "apps": "v1", "batch": "v1"}


def admission_review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str | None = None,
    user: str = "alice@example.com",
    groups: list[str] | None = None,
    api_version: str = "admission.k8s.io/v1",
    dry_run: bool = False,
    uid: str | None = None,
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview request with the fields the API server sets for `operation`.

    DELETE: `object` is null and `oldObject` is set. CONNECT: no oldObject and no options.
    CREATE with generateName: `name` is empty. `dryRun` is always present.
    """
    source = obj if obj is not None else old
    assert source is not None, "give obj or old"
    api = str(source.get("apiVersion", "v1"))
    group = kind_table.group_of(api)
    version = api.rpartition("/")[2]
    kind = str(source.get("kind", ""))
    spec = kind_table.lookup(group, kind)
    resource = spec.resource if spec else kind.lower() + "s"
    meta = source.get("metadata") or {}
    ns = namespace if namespace is not None else meta.get("namespace", "default")
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": meta.get("name", ""),
        "namespace": ns,
        "operation": operation,
        "userInfo": {"username": user, "uid": "u-1",
                     "groups": groups if groups is not None else ["system:authenticated"]},
        "object": copy.deepcopy(obj),
        "oldObject": copy.deepcopy(old),
        "dryRun": dry_run,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    if operation == "CREATE":
        request["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
    elif operation == "UPDATE":
        request["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
    elif operation == "DELETE":
        request["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}
    if operation == "CONNECT":
        request.pop("oldObject")
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def container(name: str = "main", image: str = "registry.example.com/ml/train:1.0",
              requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
              **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image}
    if requests is not None or limits is not None:
        c["resources"] = {}
        if requests is not None:
            c["resources"]["requests"] = dict(requests)
        if limits is not None:
            c["resources"]["limits"] = dict(limits)
    c.update(extra)
    return c


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers) or [container()]}
    spec.update(extra)
    return spec


def pod(spec: dict[str, Any] | None = None, name: str = "train", namespace: str = "ml",
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec or pod_spec()}


GPU = {"nvidia.com/gpu": "1"}
LIMITED = {"cpu": "1", "memory": "2Gi"}


# Besides the built-in defaults, a configuration that makes every default policy edit more:
# default limits, separate accelerator defaults, an extra toleration.
EVERY_DEFAULT_EDITING: dict[str, Any] = {"policies": {
    "gpu-tolerations": {"mode": "enforce", "params": {"extraTolerations": [
        {"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}},
    "default-resources": {"mode": "enforce", "params": {
        "default": {"requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"}},
        "accelerator": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "32Gi"}}}},
    "require-limits": {"mode": "enforce"},
}}

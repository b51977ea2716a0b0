"""The scan tests' cluster: a real kube-apiserver of their own (a scan lists every
namespace, so no other test's objects may be in it) holding tests/audit/fixtures/cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.e2e import cluster, controlplane

FIXTURES = Path(__file__).parent / "fixtures" / "cluster"
PYTORCHJOBS = "pytorchjobs.kubeflow.org"


def populate(plane: controlplane.ControlPlane) -> None:
    """The CRD, the namespaces, then each object; an owner's uid goes into its dependents'
    ownerReferences (nothing runs, so the ReplicaSet and its Pod are made by hand)."""
    cluster.install_crds(plane, [FIXTURES / "pytorchjobs-crd.yaml"])
    uids: dict[tuple[str, str, str], str] = {}
    for obj in yaml.safe_load_all((FIXTURES / "objects.yaml").read_text()):
        meta = obj["metadata"]
        plane.namespace(meta["namespace"])
        for owner in meta.get("ownerReferences", []):
            owner["uid"] = uids[(owner["kind"], meta["namespace"], owner["name"])]
        created = json.loads(plane.kubectl("create", "-o", "json", "-f", "-",
                                           input=json.dumps(obj)).stdout)
        uids[(obj["kind"], meta["namespace"], meta["name"])] = created["metadata"]["uid"]


@contextmanager
def populated(workdir: Path) -> Iterator[controlplane.ControlPlane]:
    with controlplane.running(workdir) as plane:
        populate(plane)
        yield plane

"""The fields a CEL rule reads: trimming its variables to them never changes a verdict."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from webhook import celreads

VARIABLES = ("object", "podSpec", "container")


def test_chains_of_selections_are_found_per_variable() -> None:
    source = ("has(object.metadata.labels) && 'team' in object.metadata.labels\n"
              "&& object.spec.containers.all(c, c.image.startsWith('r/'))\n"
              "&& podSpec.volumes.exists(v, has(v.hostPath)) && x.object.y == 1")
    assert celreads.reads(source, VARIABLES) == {
        "object": [("metadata", "labels"), ("metadata", "labels"), ("spec", "containers")],
        "podSpec": [("volumes",)]}


@pytest.mark.parametrize(("source", "paths"), [
    ("object == oldObject", [()]),                               # the variable alone
    ("object['spec'].replicas > 1", [()]),                       # indexed at once
    ("object.spec['replicas'] > 1", [("spec",)]),                 # indexed after a field
    ("object.?spec.orValue({}) == {}", [()]),                     # optional selection
    ("object.metadata.name.startsWith('a')", [("metadata", "name")]),  # a method ends it
    ("size(object.metadata . labels) > 0", [("metadata", "labels")]),  # spaces
    ("object.spec.size() > 0", [("spec",)]),
])
def test_where_a_chain_stops_the_whole_subtree_is_kept(source: str,
                                                       paths: list[celreads.Path]) -> None:
    assert celreads.reads(source, VARIABLES)["object"] == paths


def test_trimming_keeps_the_chains_and_nothing_else() -> None:
    obj = {"kind": "Pod", "metadata": {"name": "a", "labels": {"team": "x"}},
           "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "v"}]}}
    assert celreads.trimmed(obj, [("metadata", "labels"), ("kind",)]) == {
        "kind": "Pod", "metadata": {"labels": {"team": "x"}}}
    assert celreads.trimmed(obj, [("metadata", "missing"), ("spec", "containers", "x")]) == {
        "metadata": {}, "spec": {"containers": [{"name": "c"}]}}
    # a shorter chain keeps its subtree whole, whatever order the chains come in
    assert celreads.trimmed(obj, [("spec", "volumes"), ("spec",)])["spec"] is obj["spec"]
    assert celreads.trimmed(obj, [()]) is obj
    assert celreads.trimmed(None, [("spec",)]) is None


OBJECT: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "train", "labels": {"team": "nlp", "tier": ""},
                 "annotations": {"a/b": "1"}},
    "spec": {"hostNetwork": False, "replicas": 3,
             "containers": [{"name": "main", "image": "r/x:1",
                             "resources": {"limits": {"nvidia.com/gpu": "2"}}},
                            {"name": "log", "image": "busybox"}],
             "volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]},
}
RULES = [
    "has(object.metadata.labels) && 'team' in object.metadata.labels",
    "object.metadata.labels.team == 'nlp' && object.kind == 'Pod'",
    "!has(object.metadata.labels.owner)",
    "has(object.spec.missing.deeper)",
    "object.spec.containers.all(c, has(c.resources))",
    "object.spec.containers.exists(c, c.image.startsWith('busybox'))",
    "object.spec.volumes.all(v, !has(v.hostPath) || !v.hostPath.path.endsWith('docker.sock'))",
    "object.spec.replicas > 2 && object.spec.hostNetwork == false",
    "object.metadata.name.size() == 5",
    "object.metadata.annotations['a/b'] == '1'",
    "object.spec['containers'].size() == 2",
    "object == object",
    "object.spec.containers[0].resources.limits['nvidia.com/gpu'] == '2'",
    "object.metadata.labels.size() == 2 && object.metadata.size() == 3",
    "object.spec.containers.map(c, c.name) == ['main', 'log']",
    "object.metadata.labels.team.nope == 1",  # a selection on a string: an error both ways
    "object.spec.nothing == 1",  # a missing field: an error both ways
    "'object.kind' != '' && object.kind.startsWith('P')",
]


@pytest.mark.parametrize("source", RULES)
def test_a_rule_answers_alike_on_the_trimmed_variables(source: str) -> None:
    program = cel.compile(source)

    def outcome(obj: Any) -> Any:
        try:
            return program.execute({"object": obj})
        except Exception as exc:  # the same kind of error is the same answer
            return type(exc).__name__

    paths = celreads.reads(source, VARIABLES).get("object", [()])
    assert outcome(celreads.trimmed(OBJECT, paths)) == outcome(OBJECT)

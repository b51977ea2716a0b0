"""JSONPatch diffs apply cleanly, op by op, to the document they were computed from."""

from __future__ import annotations

import copy

import jsonpatch
import pytest

from webhook import patches

CASES = [
    ({}, {"a": 1}),
    ({"a": 1}, {}),
    ({"a": 1}, {"a": "1"}),
    ({"a": True}, {"a": 1}),
    ({"a": 1}, {"a": 1.0}),
    ({"l": [1, 2, 3]}, {"l": [1]}),
    ({"l": [1]}, {"l": [1, 2, 3]}),
    ({"l": [{"x": 1}, {"y": 2}]}, {"l": [{"x": 2}]}),
    ({"limits": {"nvidia.com/gpu": "1"}}, {"limits": {"nvidia.com/gpu": "2", "a~b": 1}}),
    ({"x": {"y": [1, {"z": None}]}}, {"x": {"y": [1, {"z": 0}], "w": []}}),
    ([1, 2], {"now": "a dict"}),
]


@pytest.mark.parametrize(("old", "new"), CASES)
def test_diff_applies_with_an_independent_implementation(old: object, new: object) -> None:
    ops = patches.diff(old, new)
    assert jsonpatch.JsonPatch(ops).apply(copy.deepcopy(old)) == new
    assert patches.apply(old, ops) == new  # our own applier agrees


def test_pointer_tokens_are_escaped() -> None:
    ops = patches.diff({"r": {}}, {"r": {"nvidia.com/gpu": "1", "a~b": "2"}})
    assert {op["path"] for op in ops} == {"/r/nvidia.com~1gpu", "/r/a~0b"}


def test_no_change_no_ops() -> None:
    doc = {"spec": {"containers": [{"name": "a"}]}}
    assert patches.diff(doc, copy.deepcopy(doc)) == []

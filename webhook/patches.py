"""RFC 6902 JSONPatch as the difference of two JSON documents.

The engine lets policies edit a working copy and answers with `diff(original, copy)`.
The operations are ordered so that they apply cleanly to the original, one after the
other, as the API server applies them: list tails are removed from the end backwards and
list growth is added at explicit indices.
"""

from __future__ import annotations

from typing import Any

import orjson

from webhook.workloads import escape


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `True == 1` and `1 == 1.0` in Python, but not in JSON."""
    if type(a) is not type(b) or a != b:
        return False
    # Equal containers may still hide such a difference; their JSON text settles it.
    return not isinstance(a, dict | list) or orjson.dumps(a) == orjson.dumps(b)


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """The JSONPatch that turns `old` into `new`.

    Unchanged values are skipped before recursing, at C speed, which keeps the diff of a
    large object with a few edits cheap.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        if not old.keys() <= new.keys():  # keys are rarely removed: skip the loop at C speed
            for key in old:
                if key not in new:
                    ops.append({"op": "remove", "path": f"{path}/{escape(key)}"})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": f"{path}/{escape(key)}", "value": value})
            elif not _same(old[key], value):
                ops.extend(diff(old[key], value, f"{path}/{escape(key)}"))
        return ops
    if isinstance(old, list) and isinstance(new, list):
        ops = []
        common = min(len(old), len(new))
        for index in range(common):
            if not _same(old[index], new[index]):
                ops.extend(diff(old[index], new[index], f"{path}/{index}"))
        for index in range(len(old) - 1, common - 1, -1):
            ops.append({"op": "remove", "path": f"{path}/{index}"})
        for index in range(common, len(new)):
            ops.append({"op": "add", "path": f"{path}/{index}", "value": new[index]})
        return ops
    if _same(old, new):
        return []
    return [{"op": "replace", "path": path, "value": new}]


def apply(obj: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply a patch made by `patches.diff` (add/remove/replace) to a copy of `obj`."""
    result = orjson.loads(orjson.dumps(obj))
    for op in ops:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        if not tokens:  # the whole document
            result = orjson.loads(orjson.dumps(op["value"]))
            continue
        parent: Any = result
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(index, op["value"])
            elif op["op"] == "remove":
                del parent[index]
            else:
                parent[index] = op["value"]
        elif op["op"] == "remove":
            del parent[last]
        else:
            parent[last] = op["value"]
    return result

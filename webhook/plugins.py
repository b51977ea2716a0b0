"""Finding policies: the `mlgate.policies` entry-point group and directories of `.py` files.

The built-in policies register through the same entry-point group as third-party ones,
so the plugin path is exercised on every start. A module that fails to import is only
an error when a policy it would provide is enabled (the caller decides that).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from webhook import errors, policy

PolicyClass = type[policy.Policy[Any]]

ENTRY_POINT_GROUP = "mlgate.policies"


@dataclass
class Catalogue:
    """Every policy class found, and the sources that failed to load (by policy name)."""

    policies: dict[str, PolicyClass] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # name -> where it came from
    failures: dict[str, str] = field(default_factory=dict)  # name or file -> reason

    def add(self, cls: PolicyClass, source: str) -> None:
        if not cls.name:
            raise errors.PluginError(f"{source}: policy class {cls.__qualname__} has no name")
        if not issubclass(cls, policy.MutatingPolicy | policy.ValidatingPolicy):
            raise errors.PluginError(
                f"{source}: policy {cls.name!r} subclasses neither MutatingPolicy[P] nor "
                f"ValidatingPolicy[P] of webhook.policy; subclass one of them")
        known = self.policies.get(cls.name)
        if known is not None and known is not cls:
            raise errors.PluginError(
                f"two policies are named {cls.name!r}: {self.sources[cls.name]} and {source}")
        self.policies[cls.name] = cls
        self.sources[cls.name] = source

    def get(self, name: str) -> PolicyClass:
        if name in self.policies:
            return self.policies[name]
        if name in self.failures:
            raise errors.PluginError(f"policy {name!r} is enabled but failed to load: "
                                     f"{self.failures[name]}")
        broken = "; ".join(f"{k}: {v}" for k, v in self.failures.items() if k.endswith(".py"))
        hint = f" (modules that failed to load: {broken})" if broken else ""
        raise errors.PluginError(
            f"policy {name!r} is enabled but no module provides it; known policies: "
            f"{', '.join(sorted(self.policies)) or 'none'}{hint}")


def _policy_classes(module: object) -> list[PolicyClass]:
    return [
        obj for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, policy.Policy) and obj.__module__ == getattr(
            module, "__name__", None) and obj.name
    ]


def from_entry_points(catalogue: Catalogue) -> None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.name} = {entry.value}"
        try:
            cls = entry.load()
        except Exception as exc:  # any import error of a third-party module
            catalogue.failures[entry.name] = f"{source}: {type(exc).__name__}: {exc}"
            continue
        if not (inspect.isclass(cls) and issubclass(cls, policy.Policy)):
            catalogue.failures[entry.name] = (
                f"{source}: is not a subclass of webhook.policy.MutatingPolicy or "
                f"ValidatingPolicy")
            continue
        if cls.name != entry.name:
            catalogue.failures[entry.name] = (
                f"{source}: the class is named {cls.name!r}; entry point and policy names must "
                f"be equal")
            continue
        catalogue.add(cls, source)


def from_directory(catalogue: Catalogue, directory: str | Path) -> None:
    path = Path(directory)
    if not path.is_dir():
        raise errors.PluginError(f"policyPaths: {path} is not a directory")
    for file in sorted(path.glob("*.py")):
        module_name = f"mlgate_policy_{abs(hash(str(file.resolve())))}_{file.stem}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            catalogue.failures[str(file)] = "cannot be imported as a module"
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # a broken user module must not take the others down
            sys.modules.pop(module_name, None)
            catalogue.failures[str(file)] = f"{type(exc).__name__}: {exc}"
            continue
        for cls in _policy_classes(module):
            catalogue.add(cls, str(file))


def discover(policy_paths: list[str] | None = None) -> Catalogue:
    """Every policy from the entry points, then from each directory in `policy_paths`."""
    catalogue = Catalogue()
    from_entry_points(catalogue)
    for directory in policy_paths or []:
        from_directory(catalogue, directory)
    return catalogue

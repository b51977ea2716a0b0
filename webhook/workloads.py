"""The views a policy works on: a `Workload`, its `PodSpecView`s and their `ContainerView`s.

Policies never walk raw objects: `kind_table.view()` finds every pod spec of an object,
with its JSON pointer, its role and how many pods it stands for, so one policy works for a
bare Pod and a four-role PyTorchJob alike. Views hold references into the working copy:
editing a view edits the object, and the engine diffs the result.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from webhook import schema

if TYPE_CHECKING:
    from webhook import dra, kind_table

JSON = dict[str, Any]

CONTAINER: schema.ContainerType = "container"
INIT: schema.ContainerType = "init"
SIDECAR: schema.ContainerType = "sidecar"
EPHEMERAL: schema.ContainerType = "ephemeral"


def escape(token: str) -> str:
    """Escape one JSON pointer token (RFC 6901): `nvidia.com/gpu` -> `nvidia.com~1gpu`."""
    return token.replace("~", "~0").replace("/", "~1")


@functools.lru_cache(maxsize=256)
def glob_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """One compiled regular expression for a set of shell globs (case-sensitive).

    Answers are remembered per name (a pod names a handful of resources, asked about by
    every accelerator policy), at most `MATCHES_KEPT` of them.
    """
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")
    answers: dict[str, bool] = {}

    def matches(name: str) -> bool:
        answer = answers.get(name)
        if answer is None:
            if len(answers) >= MATCHES_KEPT:
                answers.clear()
            answer = answers[name] = regex.match(name) is not None
        return answer

    return matches


MATCHES_KEPT = 1024


@functools.lru_cache(maxsize=1024)  # the same few pointers (roles, fields) every request
def pointer(*tokens: str | int) -> str:
    return "".join("/" + escape(str(t)) for t in tokens)


def as_dict(value: Any) -> JSON | None:
    """The value if it is a JSON object, else None: objects may be malformed anywhere."""
    return value if isinstance(value, dict) else None


def as_list(value: Any) -> list[Any]:
    """The value if it is a JSON array, else []."""
    return value if isinstance(value, list) else []


@dataclass
class ContainerView:
    """One container of a pod spec, with the pointer of its dict in the object."""

    data: JSON
    pointer: str
    container_type: schema.ContainerType  # which list of the pod spec it is in

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def image(self) -> str | None:
        image = self.data.get("image")
        return image if isinstance(image, str) else None

    def _resources(self, section: str) -> JSON:
        resources = self.data.get("resources")
        if isinstance(resources, dict):
            found = resources.get(section)
            if isinstance(found, dict):
                return found
        return {}

    @property
    def requests(self) -> JSON:
        return self._resources("requests")

    @property
    def limits(self) -> JSON:
        return self._resources("limits")

    def resource_names(self) -> set[str]:
        return set(self.requests) | set(self.limits)

    def set_resource(self, section: str, resource: str, value: str) -> None:
        """Set `resources.<section>.<resource>`, creating the maps that are missing."""
        resources = self.data.get("resources")
        if not isinstance(resources, dict):
            resources = self.data["resources"] = {}
        target = resources.get(section)
        if not isinstance(target, dict):
            target = resources[section] = {}
        target[resource] = value

    def field_pointer(self, *tokens: str | int) -> str:
        return self.pointer + pointer(*tokens)


@dataclass
class PodSpecView:
    """One pod spec inside a workload.

    `spec` is the dict holding the pod-level fields (tolerations, nodeSelector, volumes,
    ...). For most kinds it is a core PodSpec; for KServe components and Argo templates it
    is the component or template, which inline the same fields.
    """

    spec: JSON
    pointer: str
    role: str
    replicas: int = 1
    containers: list[ContainerView] = field(default_factory=list)
    metadata_holder: JSON | None = None  # dict owning `metadata` (template) for labels
    labels_inline: bool = False  # KServe components carry `labels`/`annotations` inline
    # Bound by its `Workload` from the request: where the pod's DRA claims are looked up
    # (`accelerators` reads them; None: claims are not looked at) and in which namespace.
    claims: dra.Resolver | None = field(default=None, repr=False, compare=False)
    namespace: str = ""

    # -- reading ---------------------------------------------------------------
    def resources_matching(self, patterns: list[str]) -> list[str]:
        """Resource names (sorted) requested or limited by any container that match a glob."""
        matches = glob_matcher(tuple(patterns))
        found: set[str] = set()
        for container in self.containers:
            found.update(name for name in container.resource_names() if matches(name))
        return sorted(found)

    def requests(self, pattern: str) -> bool:
        """True when any container requests or limits a resource matching `pattern`."""
        return bool(self.resources_matching([pattern]))

    @property
    def labels(self) -> JSON:
        meta = self._metadata(create=False)
        return as_dict(meta.get("labels")) or {} if meta is not None else {}

    @property
    def annotations(self) -> JSON:
        meta = self._metadata(create=False)
        return as_dict(meta.get("annotations")) or {} if meta is not None else {}

    # -- editing ---------------------------------------------------------------
    def _metadata(self, create: bool) -> JSON | None:
        if self.labels_inline:
            return self.spec
        if self.metadata_holder is None:
            return None
        meta = self.metadata_holder.get("metadata")
        if not isinstance(meta, dict):
            if not create:
                return None
            meta = self.metadata_holder["metadata"] = {}
        return meta

    def set_label(self, key: str, value: str) -> None:
        meta = self._metadata(create=True)
        if meta is None:
            return
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = meta["labels"] = {}
        labels[key] = value

    def list_field(self, name: str) -> list[Any]:
        """The pod-level list `name` (tolerations, volumes, ...), created when missing."""
        value = self.spec.get(name)
        if not isinstance(value, list):
            value = self.spec[name] = []
        return value

    def tolerates(self, key: str, effect: str = "NoSchedule") -> bool:
        for toleration in as_list(self.spec.get("tolerations")):
            if not isinstance(toleration, dict):
                continue
            t_key = toleration.get("key") or ""
            t_effect = toleration.get("effect") or ""
            operator = toleration.get("operator") or "Equal"
            key_ok = t_key == key or (t_key == "" and operator == "Exists")
            if key_ok and t_effect in ("", effect) and operator == "Exists":
                return True
        return False

    def tolerate(self, key: str, operator: str = "Exists", effect: str = "NoSchedule") -> bool:
        """Add a toleration unless an equivalent one is present. True when added."""
        if self.tolerates(key, effect):
            return False
        self.list_field("tolerations").append({"key": key, "operator": operator, "effect": effect})
        return True


@dataclass(frozen=True)
class Context:
    """What a policy may know about the request besides the object."""

    operation: str = "CREATE"
    namespace: str = ""
    user: str = ""
    groups: tuple[str, ...] = ()
    dry_run: bool = False
    old_object: JSON | None = None
    request: JSON = field(default_factory=dict)  # the normalised request, for CEL rules
    # Finds the ResourceClaims and templates that pod claims name; the `Workload` hands
    # it to its pods. None: DRA claims are not looked at.
    claims: dra.Resolver | None = None


@dataclass
class Workload:
    """A whole object with every pod spec it holds, and the request it came in."""

    obj: JSON
    kind: str
    group: str
    pods: list[PodSpecView]
    kind_spec: kind_table.KindSpec | None  # its entry in the kind table
    context: Context = field(default_factory=Context)

    def __post_init__(self) -> None:
        for pod in self.pods:
            pod.claims, pod.namespace = self.context.claims, self.namespace

    @property
    def metadata(self) -> JSON:
        return as_dict(self.obj.get("metadata")) or {}

    @property
    def name(self) -> str:
        meta = self.metadata
        return str(meta.get("name") or meta.get("generateName") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or self.context.namespace or "")

    @property
    def labels(self) -> JSON:
        return as_dict(self.metadata.get("labels")) or {}

    @property
    def annotations(self) -> JSON:
        return as_dict(self.metadata.get("annotations")) or {}

    @property
    def total_pods(self) -> int:
        return sum(pod.replicas for pod in self.pods)

    def containers(self) -> Iterator[tuple[PodSpecView, ContainerView]]:
        for pod in self.pods:
            for container in pod.containers:
                yield pod, container

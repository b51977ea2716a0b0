"""Workloads carry the labels the platform needs, with values of the right shape.

Ownership (`team`), cost attribution (`cost-center`) and the app name drive quotas,
chargeback, alert routing and clean-up of forgotten GPU jobs. A label that is missing or
misspelled (`Team`, `cost_center: TBD`) silently breaks all of them, so this policy
refuses the object instead. Values are checked against a regular expression, searched
like Gatekeeper's `allowedRegex` (anchor with `^...$` for a whole match). Pod templates
can be required to carry the labels too, since pods are what cost reports see.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import Field

from webhook import policy, workloads


class Label(policy.Params):
    key: str = Field(description="Label key, e.g. team or app.kubernetes.io/name.")
    pattern: str = Field(".+", description="Regular expression the value must contain a "
                                           "match of (default: non-empty).")
    example: str = Field("", description="A valid value, shown in the fix.")


class Params(policy.Params):
    labels: list[Label] = Field(default_factory=list,
                                description="Labels required on every workload.")
    namespaces: dict[str, list[Label]] = Field(
        default_factory=dict,
        description="Namespace glob -> more required labels there (first matching glob).")
    podTemplates: bool = Field(False, description="Also require them on every pod template.")


def labels_pointer(workload: workloads.Workload, pod: workloads.PodSpecView) -> str:
    """JSON pointer of the labels map that belongs to `pod`."""
    if pod.labels_inline:
        return pod.pointer + "/labels"
    if pod.metadata_holder is workload.obj:
        return "/metadata/labels"
    holder = pod.metadata_holder
    if holder is not None and holder.get("spec") is pod.spec and pod.pointer.endswith("/spec"):
        return pod.pointer[: -len("/spec")] + "/metadata/labels"
    return pod.pointer + "/metadata/labels"


class RequiredLabels(policy.ValidatingPolicy[Params]):
    """Reject workloads (and optionally pod templates) missing required labels."""

    name = "required-labels"
    blocking = False

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        every = [("labels", params.labels)]
        every += [(f"namespaces.{k}", v) for k, v in params.namespaces.items()]
        for where, labels in every:
            for label in labels:
                try:
                    re.compile(label.pattern)
                except re.error as exc:
                    raise ValueError(f"{where}: {label.key}: pattern {label.pattern!r} is not "
                                     f"a regular expression: {exc}") from exc

    def validate(self, workload: workloads.Workload,
                 ) -> Iterator[policy.Violation]:
        required = list(self.params.labels) + (
            policy.for_namespace(self.params.namespaces, workload.namespace) or [])
        if not required:
            return
        yield from self._check(workload.labels, "/metadata/labels", "", "the object", required)
        if not self.params.podTemplates:
            return
        for pod in workload.pods:
            if pod.metadata_holder is workload.obj:
                continue  # a Pod is its own template
            yield from self._check(pod.labels, labels_pointer(workload, pod), pod.pointer,
                                   f"the pod template ({pod.role})", required)

    def _check(self, labels: dict[str, object], pointer: str, pod: str, subject: str,
               required: list[Label]) -> Iterator[policy.Violation]:
        for label in required:
            value = labels.get(label.key)
            path = pointer + workloads.pointer(label.key)
            example = label.example or "<value>"
            if value is None:
                yield policy.Violation(
                    what=f"{subject} has no label {label.key}",
                    fix=f"add the label {label.key}: {example}", path=path, pod=pod)
            elif not re.search(label.pattern, str(value)):
                yield policy.Violation(
                    what=f"{subject} has label {label.key}={value!r}, which does not match "
                         f"{label.pattern!r}",
                    fix=f"set {label.key} to a value matching {label.pattern!r}"
                        + (f", e.g. {label.example}" if label.example else ""),
                    path=path, pod=pod)

"""Steer accelerator pods onto the nodes that have the accelerator they ask for.

A pod that requests `nvidia.com/gpu` but may land on any node relies on the scheduler's
resource fit alone; with several GPU generations in one cluster, a job meant for H100s
runs on T4s. This policy adds, to pods that request an accelerator, the node labels the
platform maps to it: a `nodeSelector` entry per requested resource (`nvidia.com/gpu` ->
`nvidia.com/gpu.present: "true"`), and a required node affinity from a product
annotation (`mlgate.io/gpu-product: H100` -> `nvidia.com/gpu.product In [...]`).

The user's placement always wins: a nodeSelector key that is set is left alone, and the
affinity requirement is ANDed into every existing node selector term (Kubernetes ORs the
terms) unless that term already constrains the same label key. Pods without accelerators
are never touched. The default maps are empty, because node labels differ by cluster
(GPU feature discovery, GKE, EKS) and a selector no node carries leaves pods Pending.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from pydantic import Field

from webhook import accelerators, policy, workloads


class ProductRule(policy.Params):
    annotation: str = Field(description="Pod (or object) annotation naming the product(s), "
                                        "comma-separated, e.g. mlgate.io/gpu-product.")
    nodeLabel: str = Field(description="Node label the product is matched on, "
                                       "e.g. nvidia.com/gpu.product.")
    values: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Annotation value -> node label values, e.g. H100: "
                    "[NVIDIA-H100-80GB-HBM3]; a value not listed is used as it is.")


class Params(policy.Params):
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Accelerator resources (globs) that make a pod an accelerator pod.")
    nodeSelectors: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Requested resource (glob) -> nodeSelector entries added, e.g. "
                    "nvidia.com/gpu: {nvidia.com/gpu.present: 'true'}.")
    products: list[ProductRule] = Field(
        default_factory=list,
        description="Annotations that become a required node affinity on a node label.")


def _dict_at(holder: dict[str, Any], key: str) -> dict[str, Any]:
    value = holder.get(key)
    if not isinstance(value, dict):
        value = holder[key] = {}
    return value


def _list_at(holder: dict[str, Any], key: str) -> list[Any]:
    value = holder.get(key)
    if not isinstance(value, list):
        value = holder[key] = []
    return value


def require_node_label(spec: dict[str, Any], key: str, values: list[str]) -> None:
    """AND `key In values` into every required node selector term, or add the first term.

    A term that already has an expression on `key` is the user's choice and stays as it is.
    """
    affinity = _dict_at(spec, "affinity")
    node_affinity = _dict_at(affinity, "nodeAffinity")
    required = _dict_at(node_affinity, "requiredDuringSchedulingIgnoredDuringExecution")
    terms = _list_at(required, "nodeSelectorTerms")
    expression = {"key": key, "operator": "In", "values": list(values)}
    if not terms:
        terms.append({"matchExpressions": [expression]})
        return
    for term in terms:
        if not isinstance(term, dict):
            continue
        expressions = _list_at(term, "matchExpressions")
        if any(isinstance(e, dict) and e.get("key") == key for e in expressions):
            continue
        expressions.append(dict(expression, values=list(values)))


class GpuNodePlacement(policy.MutatingPolicy[Params]):
    """Add nodeSelector entries and required node affinity to accelerator pods."""

    name = "gpu-node-placement"
    blocking = False
    edits_in_place = True

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        for pattern, selector in params.nodeSelectors.items():
            for key, value in selector.items():
                if not key or not isinstance(value, str):
                    raise ValueError(f"nodeSelectors.{pattern}: {key!r}: {value!r} must be a "
                                     f"label key with a string value (quote 'true')")

    def mutate(self, workload: workloads.Workload) -> None:
        for pod in workload.pods:
            found = accelerators.pod_accelerators(pod,
                                                   self.params.accelerators)
            if not found:
                continue
            self._select(pod, found)
            for rule in self.params.products:
                wanted = pod.annotations.get(rule.annotation, workload.annotations.get(
                    rule.annotation))
                if not isinstance(wanted, str) or not wanted.strip():
                    continue
                values: list[str] = []
                for product in (p.strip() for p in wanted.split(",")):
                    for value in rule.values.get(product, [product] if product else []):
                        if value not in values:
                            values.append(value)
                if values:
                    require_node_label(pod.spec, rule.nodeLabel, values)

    def _select(self, pod: workloads.PodSpecView, found: list[str]) -> None:
        for pattern, selector in self.params.nodeSelectors.items():
            if not any(fnmatch.fnmatchcase(resource, pattern) for resource in found):
                continue
            node_selector = _dict_at(pod.spec, "nodeSelector")
            for key, value in selector.items():
                node_selector.setdefault(key, value)

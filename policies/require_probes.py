"""Long-running serving workloads have readiness probes on their serving containers.

A model server takes minutes to load weights onto the GPU. Without a readiness probe the
Service sends requests to it the moment the process starts, and a rolling update takes
the old replicas down before the new ones can answer: every deploy is an outage. Batch
and training jobs run to completion and are not behind a Service, so they are exempt:
the policy checks only the kinds listed (by default the serving kinds), and in them the
regular containers that declare a port, or all regular containers of a pod where none
declares one (init containers finish before serving; `servingContainers: all` checks
every regular container, as Kyverno and Gatekeeper do for Pods; sidecars can be
exempted by name). In a LeaderWorkerSet with a leader template only the leaders serve:
the LWS Service selects leaders, the workers (Ray workers behind a vLLM leader) take no
traffic. KServe framework specs (`model:`, `sklearn:`, ...) get their container and probes
from the ServingRuntime, so only the `containers:` list of a component is checked.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from webhook import kind_table, policy, workloads

PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
ProbeName = Literal["readinessProbe", "livenessProbe", "startupProbe"]
SERVING_KINDS = ["Deployment", "StatefulSet", "InferenceService", "LeaderWorkerSet",
                 "RayService"]


class Params(policy.Params):
    kinds: list[kind_table.KindName] = Field(
        default_factory=lambda: list(SERVING_KINDS),
        description="Kinds (Kind or group/Kind) whose containers need probes.")
    probes: list[ProbeName] = Field(
        default_factory=lambda: list[ProbeName](["readinessProbe"]), min_length=1,
        description="Probes required on each serving container.")
    require: Literal["all", "any"] = Field(
        "all", description="all: every listed probe; any: at least one of them.")
    servingContainers: Literal["auto", "all"] = Field(
        "auto", description="auto: regular containers that declare ports (all of them when "
                            "none does); all: every regular container.")
    exemptContainers: list[str] = Field(
        default_factory=list,
        description="Container names (globs) that need no probe, e.g. istio-proxy.")


class RequireProbes(policy.ValidatingPolicy[Params]):
    """Reject serving containers without the required probes."""

    name = "require-probes"
    blocking = False

    def validate(self, workload: workloads.Workload,
                 ) -> Iterator[policy.Violation]:
        if not (workload.kind in self.params.kinds
                or f"{workload.group}/{workload.kind}" in self.params.kinds):
            return
        leaders = workload.kind == "LeaderWorkerSet" and any(
            p.role == "leader" for p in workload.pods)
        for pod, container in workload.containers():
            regular = container.container_type == workloads.CONTAINER
            if not regular or (leaders and pod.role == "worker"):
                continue
            if pod.labels_inline and not container.pointer.startswith(pod.pointer + "/containers/"):
                continue  # a KServe framework spec: the ServingRuntime supplies the probes
            if any(fnmatch.fnmatchcase(container.name, p) for p in self.params.exemptContainers):
                continue
            if self.params.servingContainers == "auto" and not container.data.get("ports") and any(
                    c.data.get("ports") for c in pod.containers
                    if c.container_type == workloads.CONTAINER):
                continue  # another container of the pod is the one that serves
            present = [p for p in self.params.probes if isinstance(container.data.get(p), dict)]
            missing = [p for p in self.params.probes if p not in present]
            if self.params.require == "any" and present or not missing:
                continue
            if self.params.require == "any":
                what = f"no {' / '.join(self.params.probes)} on a serving container"
                fix = f"add one of {', '.join(self.params.probes)}, e.g. readinessProbe: " \
                      f"{{httpGet: {{path: /health, port: 8080}}}}"
                tokens: tuple[str, ...] = ()
            else:
                what = f"no {' and no '.join(missing)} on a serving container"
                fix = f"add {missing[0]}: {{httpGet: {{path: /health, port: 8080}}}} " \
                      f"(or tcpSocket/exec) so traffic waits until the model is loaded"
                tokens = (missing[0],)
            yield policy.Violation.at_container(pod, container, what, fix, *tokens)

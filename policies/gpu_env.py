"""Inject environment variables into the containers that use an accelerator.

Platform teams tune GPU jobs through the environment: `TF_FORCE_GPU_ALLOW_GROWTH` so
TensorFlow does not grab all memory, `NCCL_SOCKET_IFNAME` / `NCCL_IB_HCA` for the
cluster's fabric, `GPU_MEMORY_FRACTION` for shared dev GPUs. Only containers that
request or limit an accelerator get them (a CPU sidecar has no use for NCCL settings),
and a variable the container already defines is never overwritten: the user's value
wins. Per-namespace entries (glob on the namespace) add to or override the common ones.
The defaults inject nothing, since every variable changes how the program behaves.
"""

from __future__ import annotations

import fnmatch
import re

from pydantic import Field

from webhook import accelerators, policy, workloads

# Kubernetes accepts any printable ASCII but `=`; shells and most runtimes want this form.
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class Params(policy.Params):
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Accelerator resources (globs) that make a container an accelerator one.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables for every accelerator container, e.g. "
                    "{TF_FORCE_GPU_ALLOW_GROWTH: 'true'}.")
    byResource: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Resource (glob) -> variables for containers using it, e.g. "
                    "amd.com/gpu: {HSA_FORCE_FINE_GRAIN_PCIE: '1'}.")
    namespaces: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Namespace glob -> variables (the first matching glob applies), e.g. "
                    "dev-*: {GPU_MEMORY_FRACTION: '0.5'}.")


class GpuEnv(policy.MutatingPolicy[Params]):
    """Append configured variables to accelerator containers that do not define them."""

    name = "gpu-env"
    blocking = False
    edits_in_place = True

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        sources = {"env": params.env}
        sources.update({f"byResource.{k}": v for k, v in params.byResource.items()})
        sources.update({f"namespaces.{k}": v for k, v in params.namespaces.items()})
        for where, variables in sources.items():
            for name in variables:
                if not ENV_NAME.match(name):
                    raise ValueError(f"{where}: {name!r} is not a valid environment variable "
                                     f"name (letters, digits, '_', '-', '.'; not starting "
                                     f"with a digit)")

    def variables(self, workload: workloads.Workload, resources: list[str]) -> dict[str, str]:
        """What one container using `resources` should have, in a stable order."""
        wanted = dict(self.params.env)
        for pattern, variables in self.params.byResource.items():
            if any(fnmatch.fnmatchcase(r, pattern) for r in resources):
                wanted.update(variables)
        wanted.update(policy.for_namespace(self.params.namespaces, workload.namespace) or {})
        return wanted

    def mutate(self, workload: workloads.Workload) -> None:
        for pod, container in workload.containers():
            found = accelerators.container_accelerators(container, self.params.accelerators,
                                                        pod)
            if not found:
                continue
            wanted = self.variables(workload, found)
            if not wanted:
                continue
            env = container.data.get("env")
            if env is None:
                env = container.data["env"] = []
            elif not isinstance(env, list):
                continue  # malformed: the API server rejects it, and it is not ours to fix
            present = {item.get("name") for item in env if isinstance(item, dict)}
            for name, value in wanted.items():
                if name not in present:
                    env.append({"name": name, "value": value})

"""Which extended resources are accelerators, shared by every GPU-aware policy."""

from __future__ import annotations

from webhook import workloads

# Resource names device plugins register (globs): NVIDIA (whole GPUs and MIG slices),
# AMD, Intel, Habana Gaudi, AWS Neuron and Google TPU.
DEFAULT_ACCELERATORS: list[str] = [
    "nvidia.com/gpu",
    "nvidia.com/mig-*",
    "amd.com/gpu",
    "gpu.intel.com/*",
    "habana.ai/gaudi",
    "aws.amazon.com/neuron*",
    "google.com/tpu",
]


def is_accelerator(resource: str, patterns: list[str]) -> bool:
    return workloads.glob_matcher(tuple(patterns))(resource)


def container_accelerators(container: workloads.ContainerView, patterns: list[str]) -> list[str]:
    return sorted(r for r in container.resource_names() if is_accelerator(r, patterns))


def pod_accelerators(pod: workloads.PodSpecView, patterns: list[str]) -> list[str]:
    """Accelerator resources any container of the pod requests or limits."""
    return pod.resources_matching(patterns)

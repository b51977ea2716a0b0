"""Mount a memory-backed `/dev/shm` into accelerator pods.

Container runtimes give every pod a 64 MiB `/dev/shm`. PyTorch DataLoader workers, NCCL
and vLLM pass tensors through shared memory, so the default kills them with "Bus error"
or "unable to write to file </torch_...>" as soon as batches grow. The fix is an
`emptyDir: {medium: Memory}` volume mounted at `/dev/shm`. Its size counts against the
pod's memory, so by default `sizeLimit` is a fraction of the pod's memory limit (the sum
of its containers' limits); with no memory limit anywhere it is left unset and the
kubelet caps the volume at the pod's memory.

A volume or mount already at `/dev/shm` is reused, never duplicated or changed: a
container that mounts something there keeps it, and the others get the same volume.
"""

from __future__ import annotations

import posixpath
from decimal import Decimal
from typing import Any

from pydantic import Field

from webhook import accelerators, policy, quantity, schema, workloads

SHM_PATH = "/dev/shm"
MI = Decimal(2**20)
GI = Decimal(2**30)


class Params(policy.Params):
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Accelerator resources (globs): pods requesting one get /dev/shm.")
    selector: schema.LabelSelector | None = Field(
        None, description="Pods whose labels match this selector get /dev/shm too "
                          "(e.g. CPU data-loading jobs).")
    sizeLimit: schema.Quantity | None = Field(
        None, description="Fixed sizeLimit of the volume (e.g. 8Gi); unset: memoryFraction.")
    memoryFraction: float = Field(
        0.5, gt=0, le=1, description="sizeLimit as a fraction of the pod's memory limit "
                                     "(used when sizeLimit is unset and the pod has one).")
    volumeName: str = Field("dshm", description="Name of the added volume.")
    containerKinds: list[schema.ContainerType] = Field(
        default_factory=lambda: [workloads.CONTAINER, workloads.SIDECAR],
        description="Container kinds that get the mount (container, init, sidecar).")


def _is_shm(mount: Any) -> bool:
    if not isinstance(mount, dict) or not isinstance(mount.get("mountPath"), str):
        return False
    return bool(posixpath.normpath(mount["mountPath"]) == SHM_PATH)


def _mounts(container: workloads.ContainerView) -> list[Any]:
    mounts = container.data.get("volumeMounts")
    return mounts if isinstance(mounts, list) else []


def format_size(value: Decimal) -> str:
    """Bytes as the largest whole Gi, else whole Mi (rounded down, at least 1Mi)."""
    if value >= GI and value % GI == 0:
        return f"{int(value // GI)}Gi"
    return f"{max(int(value // MI), 1)}Mi"


class ShmVolume(policy.MutatingPolicy[Params]):
    """Add an `emptyDir: {medium: Memory}` at /dev/shm to accelerator pods that lack one."""

    name = "shm-volume"
    blocking = False
    edits_in_place = True

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        unknown = set(params.containerKinds) - {workloads.CONTAINER, workloads.INIT,
                                                workloads.SIDECAR}
        if unknown:
            raise ValueError(f"containerKinds: {sorted(unknown)} cannot get volume mounts; "
                             f"use container, init or sidecar")

    def mutate(self, workload: workloads.Workload) -> None:
        for pod in workload.pods:
            if self._wanted(pod):
                self._add(pod)

    def _wanted(self, pod: workloads.PodSpecView) -> bool:
        if accelerators.pod_accelerators(pod, self.params.accelerators):
            return True
        return self.params.selector is not None and self.params.selector.matches(pod.labels)

    def _size(self, pod: workloads.PodSpecView) -> str | None:
        if self.params.sizeLimit is not None:
            return self.params.sizeLimit
        total = Decimal(0)
        for container in pod.containers:
            if container.container_type not in (workloads.CONTAINER, workloads.SIDECAR):
                continue
            limit = quantity.parse(container.limits.get("memory"))
            if limit is None:
                return None  # one unlimited container: the pod has no memory limit
            total += limit
        if total <= 0:
            return None
        return format_size(total * Decimal(str(self.params.memoryFraction)))

    def _add(self, pod: workloads.PodSpecView) -> None:
        targets = [c for c in pod.containers if c.container_type in self.params.containerKinds]
        lacking = [c for c in targets if not any(_is_shm(m) for m in _mounts(c))]
        if not lacking:
            return
        volume_name = self._existing_volume(pod) or self._new_volume(pod)
        for container in lacking:
            mounts = container.data.get("volumeMounts")
            if not isinstance(mounts, list):
                mounts = container.data["volumeMounts"] = []
            mounts.append({"name": volume_name, "mountPath": SHM_PATH})

    def _existing_volume(self, pod: workloads.PodSpecView) -> str | None:
        """The volume some container already mounts at /dev/shm, if any."""
        for container in pod.containers:
            for mount in _mounts(container):
                if _is_shm(mount) and isinstance(mount.get("name"), str):
                    return str(mount["name"])
        return None

    def _new_volume(self, pod: workloads.PodSpecView) -> str:
        volumes = pod.list_field("volumes")
        for volume in volumes:  # a memory emptyDir of that name, declared but not mounted
            if (isinstance(volume, dict) and volume.get("name") == self.params.volumeName
                    and isinstance(volume.get("emptyDir"), dict)
                    and volume["emptyDir"].get("medium") == "Memory"):
                return self.params.volumeName
        taken = {v.get("name") for v in volumes if isinstance(v, dict)}
        name, suffix = self.params.volumeName, 1
        while name in taken:
            name, suffix = f"{self.params.volumeName}-{suffix}", suffix + 1
        empty_dir: dict[str, str] = {"medium": "Memory"}
        size = self._size(pod)
        if size is not None:
            empty_dir["sizeLimit"] = size
        volumes.append({"name": name, "emptyDir": empty_dir})
        return name

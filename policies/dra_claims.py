"""ResourceClaims and ResourceClaimTemplates ask only for the devices their namespace may have.

With Dynamic Resource Allocation the GPUs a pod gets are written in a claim, not in the
pod: a ResourceClaim (or the ResourceClaimTemplate a pod's claims are made from) lists
device requests, each naming a DeviceClass and a count. This policy judges those objects
themselves, when they are created, so that a claim nobody could schedule (16 GPUs on
8-GPU nodes), a class a team may not use, a grab of every device of a node or admin
access to devices other pods are using is refused with the claim, not found later in a
pending pod. `gpu-limits` counts the same devices again in the pods that use the claims.

What is checked, per request (and per `firstAvailable` sub-request, each of which the
scheduler may pick), in every served shape (`exactly.*` in v1 and v1beta2, the request's
own fields in v1beta1 and v1alpha3; a template's under `spec.spec`):

- `deviceClassName` among the namespace's `deviceClasses` (globs; unset: any class);
- `count` at most `maxPerRequest`, and the claim's requests together (a `firstAvailable`
  request counting as its largest alternative) at most `maxPerClaim`; counts are devices
  of any class;
- `allocationMode: All` (every matching device on the node) only where
  `allocationModeAll` is true, and then, where a cap applies, counted as `dra.countAll`
  (unset: it cannot be held to the cap and is refused);
- `adminAccess: true` only in the namespaces of `adminAccessNamespaces` (globs). Since
  Kubernetes 1.33 the API server itself also requires the namespace label
  `resource.kubernetes.io/admin-access: "true"`; this list keeps the decision in
  mlgate's configuration (and in `mlgate check` and the scan) as well.

Per namespace glob (first match, in config order) `namespaces` overrides the top-level
`deviceClasses`, caps and `allocationModeAll`; unset fields keep the top-level value, and
`null` lifts a cap there. With no params: any class and count, `allocationMode: All` and
`adminAccess` refused.

Example: NVIDIA GPUs and MIG slices, a node's 8 GPUs at most per claim; MIG only in
`dev-*` (2 slices a claim); the monitoring namespace may watch every GPU of a node, in use
or not.

```yaml
dra-claims:
  params:
    deviceClasses: [gpu.nvidia.com, mig.nvidia.com]
    maxPerRequest: 8
    maxPerClaim: 8
    namespaces:
      "dev-*": {deviceClasses: [mig.nvidia.com], maxPerClaim: 2}
      gpu-monitoring: {allocationModeAll: true, maxPerRequest: null, maxPerClaim: null}
    adminAccessNamespaces: [gpu-monitoring]
```
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

from pydantic import Field

from webhook import dra, policy, workloads

CLAIM_KINDS = (f"{dra.GROUP}/{dra.CLAIM}", f"{dra.GROUP}/{dra.TEMPLATE}")


class Limits(policy.Params):
    deviceClasses: list[str] | None = Field(
        None, description="Device classes (globs) a request may name; unset: any.")
    maxPerRequest: int | None = Field(
        None, ge=1, description="Devices one request (each firstAvailable alternative) may "
                                "ask for; unset: no cap.")
    maxPerClaim: int | None = Field(
        None, ge=1, description="Devices one claim may ask for, its requests together (a "
                                "firstAvailable request as its largest alternative); unset: "
                                "no cap.")
    allocationModeAll: bool = Field(
        False, description="Allow requests for every matching device on the node "
                           "(allocationMode: All).")


class Params(Limits):
    namespaces: dict[str, Limits] = Field(
        default_factory=dict,
        description="Namespace glob -> settings overriding the top-level ones there (first "
                    "matching glob; unset fields keep the top-level value, null lifts a cap).")
    adminAccessNamespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces (globs) where a request may set adminAccess: true (access to "
                    "devices other pods are using); none by default.")


def effective(params: Params, namespace: str) -> Limits:
    """The top-level settings with the first matching namespace entry laid over them."""
    defaults = Limits(deviceClasses=params.deviceClasses, maxPerRequest=params.maxPerRequest,
                      maxPerClaim=params.maxPerClaim, allocationModeAll=params.allocationModeAll)
    return policy.overlaid(defaults, params.namespaces, namespace)


def field_name(pointer: str) -> str:
    """`/spec/devices/requests/0/exactly/count` -> `spec.devices.requests[0].exactly.count`."""
    text = ""
    for token in pointer.strip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        text += f"[{token}]" if token.isdigit() else f".{token}" if text else token
    return text


def _request(request: dra.Request, choice: dra.Choice) -> str:
    """`request 'gpu'`, or `sub-request 'big' of request 'gpu'` for firstAvailable."""
    if "/firstAvailable/" in choice.pointer:
        sub = choice.name.removeprefix(f"{request.name}/")
        return f"sub-request {sub!r} of request {request.name!r}"
    return f"request {request.name!r}"


def _in(namespace: str) -> str:
    return f" in namespace {namespace}" if namespace else ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class DraClaims(policy.ValidatingPolicy[Params]):
    """Reject claims and claim templates asking for devices their namespace may not have."""

    name = "dra-claims"
    blocking = False
    default_kinds = CLAIM_KINDS

    def validate(self, workload: workloads.Workload) -> Iterator[policy.Violation]:
        if workload.group != dra.GROUP or workload.kind not in (dra.CLAIM, dra.TEMPLATE):
            return  # named in match.kinds on a kind that is not a claim: nothing to judge
        namespace = workload.namespace
        limits = effective(self.params, namespace)
        resolver = workload.context.claims
        count_all = resolver.settings.countAll if resolver is not None else None
        base = dra.claim_spec_pointer(workload.obj)
        requests = dra.requests(dra.claim_spec(workload.obj))
        caps = [f"{cap} devices per {level}" for level, cap in (
            ("request", limits.maxPerRequest), ("claim", limits.maxPerClaim))
            if cap is not None]
        total: int | None = 0
        parts = []
        for request in requests:
            largest: int | None = 0
            for choice in request.choices:
                count = yield from self._choice(request, choice, base, limits, namespace,
                                                count_all, caps)
                largest = None if count is None or largest is None else max(largest, count)
            if largest is None or total is None:
                total = None
            else:
                total += largest
                parts.append(f"request {request.name!r}: {largest}")
        cap = limits.maxPerClaim
        per_request = limits.maxPerRequest
        if (len(requests) == 1 and per_request is not None and per_request <= (cap or 0)
                and total is not None and total > per_request):
            return  # the request's own message says it all: fixing it fixes the claim
        if cap is not None and total is not None and total > cap:
            subject = ("the claim" if workload.kind == dra.CLAIM
                       else "each claim made from the template")
            yield policy.Violation(
                what=f"{subject} asks for {_plural(total, 'device')} in total "
                     f"({'; '.join(parts)}); at most {cap} are allowed per claim{_in(namespace)}",
                fix="lower the counts of the requests, or split the devices over more claims "
                    "and pods", path=f"{base}/devices/requests")

    def _choice(self, request: dra.Request, choice: dra.Choice, base: str, limits: Limits,
                namespace: str, count_all: int | None,
                caps: list[str]) -> Generator[policy.Violation, None, int | None]:
        """Checks one way a request may be satisfied; returns the devices it counts as
        (None: unbounded, allocationMode All without dra.countAll)."""
        at = base + choice.pointer
        which = _request(request, choice)
        allowed = limits.deviceClasses
        if allowed is not None and not workloads.glob_matcher(tuple(allowed))(
                choice.device_class):
            pointer = f"{at}/deviceClassName"
            yield policy.Violation(
                what=f"{which} ({field_name(pointer)}) names device class "
                     f"{choice.device_class or '(none)'}, which is not allowed{_in(namespace)} "
                     f"(allowed: {', '.join(allowed) or 'none'})",
                fix=f"set deviceClassName to one of {', '.join(allowed)}" if allowed
                else "claim devices in a namespace that allows them", path=pointer)
        if choice.admin_access and not workloads.glob_matcher(
                tuple(self.params.adminAccessNamespaces))(namespace):
            pointer = f"{at}/adminAccess"
            where = (f"only in namespaces {', '.join(self.params.adminAccessNamespaces)}, not"
                     f"{_in(namespace)}" if self.params.adminAccessNamespaces
                     else "in no namespace")
            yield policy.Violation(
                what=f"{which} ({field_name(pointer)}) asks for admin access to the devices "
                     f"(adminAccess: true: access to devices other pods are using), which is "
                     f"allowed {where}",
                fix="remove adminAccess: true; monitoring and debugging claims belong in a "
                    "namespace listed in dra-claims adminAccessNamespaces", path=pointer)
        count = choice.count
        if count is None:  # allocationMode All
            pointer = f"{at}/allocationMode"
            what = (f"{which} ({field_name(pointer)}) asks for every matching "
                    f"{choice.device_class or 'device'} device on the node (allocationMode: "
                    f"All)")
            if not limits.allocationModeAll:
                yield policy.Violation(
                    what=f"{what}, which is not allowed{_in(namespace)}",
                    fix="ask for an exact number: allocationMode: ExactCount with count: N",
                    path=pointer)
                return None
            if count_all is None:
                if caps:
                    yield policy.Violation(
                        what=f"{what}, which cannot be held to the cap of {' and '.join(caps)}"
                             f"{_in(namespace)}",
                        fix="ask for an exact number (allocationMode: ExactCount, count: N), or "
                            "have the platform team set dra.countAll", path=pointer)
                return None
            count = count_all
        cap = limits.maxPerRequest
        if cap is not None and count > cap:
            pointer = f"{at}/count" if choice.count is not None else f"{at}/allocationMode"
            asks = (f"{_plural(count, 'device')} of {choice.device_class or '(no class)'}"
                    + ("" if choice.count is not None
                       else f" (allocationMode: All, counted as dra.countAll {count_all})"))
            yield policy.Violation(
                what=f"{which} ({field_name(pointer)}) asks for {asks}; at most {cap} are "
                     f"allowed per request{_in(namespace)}",
                fix=f"set count to {cap} or fewer, or split the devices over more claims and "
                    f"pods", path=pointer)
        return count

"""One admission request in, one `decisions.Decision` out.

The rules, in order: exemptions; operations, sub-resources and unknown kinds pass; objects
being deleted are never denied; each enabled policy that matches runs in a deterministic
order (the order of the configuration), mutating policies each on the previous one's
result; modes decide what a finding does (enforce denies, warn warns, audit records); a
policy that raises or runs out of time follows its failure mode; a pod claim whose
ResourceClaim or template the claim source (`dra.Source`) does not hold is a `dra` finding
that warns or denies as `dra.unresolved` says. The engine never raises for a request:
whatever happens is in the `decisions.Decision`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any, Final

import orjson
from pydantic import ValidationError

from webhook import (
    accelerators,
    admission,
    config,
    decisions,
    dra,
    errors,
    exceptions,
    invocation,
    kind_table,
    patches,
    plugins,
    policy,
    schema,
    workloads,
)
from webhook.policy import Violation

log = logging.getLogger("mlgate.engine")

MUTATE: Final[schema.Phase] = "mutate"
VALIDATE: Final[schema.Phase] = "validate"
MODE_RANK = {"audit": 0, "warn": 1, "enforce": 2}  # a finding takes the milder mode
CHECK_USER = "mlgate-check"  # the user of the requests `mlgate check` makes up
DRA = "dra"  # the name findings about unresolved pod claims carry


class Engine:
    """The configured policies, ready to evaluate requests."""

    def __init__(self, cfg: config.Config, active: list[invocation.ActivePolicy],
                 claims: dra.Source | None = None,
                 executor: concurrent.futures.Executor | None = None) -> None:
        self.config = cfg
        # Where pod claims are looked up; the server hands in its claim cache.
        # `is None`, not `or`: a claim cache with no objects yet is empty, hence falsy
        self.claims = dra.Nothing() if claims is None else claims
        # Where blocking policies run: the server hands in its `invocation.PolicyThreads`;
        # None (`mlgate check`, tests) is the event loop's default executor.
        self.executor = executor
        self.active = active
        self.mutating = [p for p in active if p.phase == MUTATE and p.mode != "off"]
        self.validating = [p for p in active if p.phase == VALIDATE and p.mode != "off"]
        self.mutable_kinds = set(cfg.mutateOnUpdate)
        self.clock = time.time  # what exceptions' expiry is compared with, per request

    # -- building --------------------------------------------------------------
    @classmethod
    def build(cls, cfg: config.Config, catalogue: plugins.Catalogue | None = None,
              claims: dra.Source | None = None,
              executor: concurrent.futures.Executor | None = None) -> Engine:
        """Resolve and instantiate every enabled policy; any problem is a ConfigError."""
        catalogue = catalogue or plugins.discover(cfg.policyPaths)
        active: list[invocation.ActivePolicy] = []
        for name, settings in cfg.policies.items():
            if settings.mode == "off":
                continue
            try:
                policy_cls = catalogue.get(settings.uses or name)
            except errors.PluginError as exc:
                if settings.uses is None:
                    raise
                raise errors.PluginError(f"policies.{name}.uses: {exc}") from exc
            try:
                params = policy_cls.params_model.model_validate(settings.params)
            except ValidationError as exc:
                raise errors.ConfigError(config.describe(exc, f"policies.{name}.params")) from exc
            env = policy.Environment(name=name, timeout=settings.timeout, deadline=cfg.deadline,
                                     registries=cfg.registries)
            try:
                instance = policy_cls(params, env)
            except (ValueError, errors.ConfigError) as exc:
                raise errors.ConfigError(f"policies.{name}.params: {exc}") from exc
            mode = settings.mode or policy_cls.default_mode
            active.append(invocation.ActivePolicy(name, instance, mode, settings))
        return cls(cfg, active, claims, executor)

    async def aclose(self) -> None:
        """Let every policy release what it holds (the engine is being replaced)."""
        for active in self.active:
            try:
                await active.policy.aclose()
            except Exception:  # closing must never take the reload down
                log.exception("closing policy %s failed", active.name)

    # -- evaluating ------------------------------------------------------------
    async def evaluate(self, request: admission.Request, phase: schema.Phase,
                       claims: dra.Source | None = None) -> decisions.Decision:
        """Decide one request; `claims` overrides the engine's claim source (`check`)."""
        started = time.perf_counter()
        decision = decisions.Decision(
            uid=request.uid, phase=phase, operation=request.operation, group=request.group,
            kind=request.kind, namespace=request.namespace,
            name=request.name or _object_name(request.object or request.old_object),
            user=request.user, groups=request.groups, dry_run=request.dry_run)
        try:
            await self._evaluate(request, phase, decision, started + self.config.deadline,
                                 self.claims if claims is None else claims)
        except Exception as exc:  # a bug in the engine itself: fail closed, never a 500
            log.exception("engine error on %s", request.uid)
            decision.allowed = False
            decision.patch = []
            decision.message = f"mlgate internal error: {type(exc).__name__}: {exc}"
        decision.duration = time.perf_counter() - started
        return decision

    def _skip_reason(self, request: admission.Request, phase: schema.Phase) -> str:
        if request.operation not in ("CREATE", "UPDATE"):
            return f"operation {request.operation} is not evaluated"
        if request.sub_resource and request.sub_resource != "ephemeralcontainers":
            return f"sub-resource {request.sub_resource} is not evaluated"
        exempt = self.config.exemptions.exempts(request.namespace, request.user, request.groups,
                                                request.group, request.kind)
        if exempt:
            return exempt
        if kind_table.lookup(request.group, request.kind) is None:
            return f"kind {request.group or 'core'}/{request.kind} is not a workload kind"
        meta = (request.object or {}).get("metadata")
        if isinstance(meta, dict) and meta.get("deletionTimestamp"):
            return "the object is being deleted"
        if phase == MUTATE and request.operation == "UPDATE":
            spec = kind_table.lookup(request.group, request.kind)
            assert spec is not None
            if not (spec.template_mutable or request.kind in self.mutable_kinds
                    or f"{request.group}/{request.kind}" in self.mutable_kinds):
                return f"the pod spec of a {request.kind} cannot change on UPDATE"
            if (request.old_object is not None
                    and _pod_templates(request.object, request.group, request.kind)
                    == _pod_templates(request.old_object, request.group, request.kind)):
                # A label, an annotation or a replica count must not roll out every pod of
                # an object created before mlgate (a changed template is a new rollout).
                return "the update changes no pod template"
        return ""

    def _matches(self, active: invocation.ActivePolicy, request: admission.Request,
                 workload: workloads.Workload) -> bool:
        match = active.settings.match
        if request.operation not in match.operations:
            return False
        if not match.matches_kind(request.group, request.kind, active.policy.default_kinds):
            return False
        if not match.namespaces.matches(request.namespace or workload.namespace):
            return False
        return match.objectSelector is None or match.objectSelector.matches(workload.labels)

    def _context(self, request: admission.Request, claims: dra.Source) -> workloads.Context:
        return workloads.Context(
            operation=request.operation, namespace=request.namespace, user=request.user,
            groups=request.groups, dry_run=request.dry_run, old_object=request.old_object,
            request=request.raw, claims=dra.Resolver(self.config.dra, claims))

    async def _evaluate(self, request: admission.Request, phase: schema.Phase,
                        decision: decisions.Decision, deadline: float,
                        claims: dra.Source) -> None:
        decision.skipped = self._skip_reason(request, phase)
        if decision.skipped:
            return
        assert request.object is not None
        context = self._context(request, claims)
        if phase == MUTATE:
            await self._mutate(request, context, decision, deadline)
        else:
            await self._validate(request, context, decision, deadline)
        self._except(request, decision)
        denials = [f for f in decision.findings
                   if f.mode == "enforce" and not f.preexisting and not f.exception]
        if denials:
            decision.allowed = False
            decision.patch = []
            decision.message = "\n".join(f.message for f in denials)
        for finding in decision.findings:
            if finding.mode == "warn" or (finding.mode == "enforce"
                                          and (finding.preexisting or bool(finding.exception))):
                decision.warnings.append(finding.message)

    def _except(self, request: admission.Request, decision: decisions.Decision) -> None:
        """Let the findings an unexpired exception covers through, naming the exception.

        Violations only: a policy failure keeps its failure mode, and mutations are never
        excepted. An expired exception that would have covered a finding is named in it.
        """
        meta = _mapping((request.object or {}).get("metadata"))
        annotations, labels = _mapping(meta.get("annotations")), _mapping(meta.get("labels"))
        configured = self.config.exceptions
        named = exceptions.annotated(annotations)
        unknown = [name for name in named if name not in configured]
        if unknown and decision.phase == VALIDATE:
            decision.warnings.append(
                f"{decision.kind} {decision.name or '(unnamed)'}: annotation "
                f"{exceptions.ANNOTATION} names {', '.join(unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not a configured exception "
                f"(configured: {', '.join(sorted(configured)) or 'none'}); it lets nothing "
                f"through")
        if not configured or not decision.findings:
            return
        candidates = [
            (name, entry) for name, entry in configured.items()
            if (not self.config.exceptionsRequireAnnotation or name in named)
            and entry.covers(request.group, request.kind,
                             request.namespace or str(meta.get("namespace") or ""),
                             decision.name, labels)]
        now = self.clock()
        for finding in decision.findings:
            if finding.error:
                continue
            covering = [(name, entry) for name, entry in candidates
                        if finding.policy in entry.policies
                        and entry.covers_container(finding.container)]
            live = [(name, entry) for name, entry in covering
                    if not entry.expired(now)]
            if live:
                name, entry = live[0]
                finding.exception = name
                # Right after the policy tag: a warning is cut at 256 characters, and the
                # exception must survive the cut.
                tag = f"[{finding.policy}] "
                rest = finding.message.removeprefix(tag)
                finding.message = (f"{tag}allowed by exception {name} (owner {entry.owner}, "
                                   f"expires {entry.until}): {rest}")
                if name not in decision.exceptions:
                    decision.exceptions.append(name)
            elif covering:
                name, entry = covering[0]
                finding.message += f" [exception {name} expired {entry.until}]"

    async def _mutate(self, request: admission.Request, context: workloads.Context,
                      decision: decisions.Decision, deadline: float) -> None:
        original = request.object
        assert original is not None
        # JSON text is the cheapest exact copy and change detector of a JSON document.
        before = orjson.dumps(original)
        working = orjson.loads(before)
        # The views of `working`, built again only after a change that may leave them stale.
        fresh: workloads.Workload | None = None

        def view(obj: dict[str, Any]) -> workloads.Workload:
            return kind_table.view(obj, request.group, request.kind, context)

        for active in self.mutating:
            workload = fresh = fresh or view(working)
            if not self._matches(active, request, workload):
                continue
            decision.evaluated.append((active.name, active.mode))
            target = working if active.mode == "enforce" else orjson.loads(before)
            mutator = active.policy
            assert isinstance(mutator, policy.MutatingPolicy)  # self.mutating holds only these
            try:
                await invocation.call(active, mutator.mutate,
                                      workload if target is working else view(target), deadline,
                                      self.executor)
            except errors.PolicyError as exc:
                decision.findings.append(invocation.failure(active, workload, exc))
                if target is working:  # a half-done mutation must not leak into the patch
                    working, fresh = orjson.loads(before), None
                continue
            after = orjson.dumps(target)
            if after == before:
                continue
            if target is working:
                decision.mutated_by.append(active.name)
                before = after
                if not mutator.edits_in_place:
                    fresh = None
            else:
                changes = patches.diff(orjson.loads(before), target)
                paths = ", ".join(op["path"] for op in changes[:5])
                what = f"would change {paths}" + (" ..." if len(changes) > 5 else "")
                message = decisions.format_violation(active.name, workload, Violation(
                    what=what, fix=f"mode {active.mode}: nothing was changed"))
                decision.findings.append(decisions.Finding(active.name, active.mode, message))
        if decision.mutated_by:
            decision.patch = patches.diff(original, working)

    async def _violations(self, active: invocation.ActivePolicy, workload: workloads.Workload,
                          deadline: float) -> list[decisions.Finding]:
        validator = active.policy
        assert isinstance(validator, policy.ValidatingPolicy)  # self.validating holds only these
        try:
            found = await invocation.call(active, validator.validate, workload, deadline,
                                          self.executor)
        except errors.PolicyError as exc:
            return [invocation.failure(active, workload, exc)]
        findings = []
        for violation in found:
            if not isinstance(violation, Violation):
                junk = errors.PolicyError(active.name, f"yielded {type(violation).__name__}, "
                                                       f"not a Violation")
                return [invocation.failure(active, workload, junk)]
            mode = active.mode
            if violation.mode is not None and MODE_RANK.get(violation.mode, 3) < MODE_RANK[mode]:
                mode = violation.mode
            findings.append(decisions.Finding(
                active.name, mode, decisions.format_violation(active.name, workload, violation),
                path=violation.path, container=violation.container))
        return findings

    async def _validate(self, request: admission.Request, context: workloads.Context,
                        decision: decisions.Decision, deadline: float) -> None:
        workload = kind_table.view(request.object, request.group, request.kind, context)
        old_workload = None
        if request.operation == "UPDATE" and request.old_object is not None:
            old_workload = kind_table.view(request.old_object, request.group, request.kind,
                                          context)
        unresolved = self._unresolved(workload)
        if old_workload is not None and unresolved:
            # a template deleted after the pod must not block its label or finalizer updates
            existing = {_key(f) for f in self._unresolved(old_workload)}
            for finding in unresolved:
                if _key(finding) in existing:
                    finding.preexisting = True
                    finding.message += " [already present before this update]"
        decision.findings.extend(unresolved)
        for active in self.validating:
            if not self._matches(active, request, workload):
                continue
            decision.evaluated.append((active.name, active.mode))
            findings = await self._violations(active, workload, deadline)
            if old_workload is not None and any(f.mode == "enforce" and not f.error
                                                for f in findings):
                old = await self._violations(active, old_workload, deadline)
                existing = {_key(f) for f in old if not f.error}
                for finding in findings:
                    if not finding.error and _key(finding) in existing:
                        finding.preexisting = True
                        finding.message += " [already present before this update]"
            decision.findings.extend(findings)

    def _unresolved(self, workload: workloads.Workload) -> list[decisions.Finding]:
        """A finding per pod claim whose ResourceClaim or template cannot be found: its
        devices are not counted, so `dra.unresolved` says whether that denies or warns."""
        mode = "enforce" if self.config.dra.unresolved == "deny" else "warn"
        resolver = workload.context.claims
        assert resolver is not None  # the engine's contexts always carry one
        claims = resolver.source
        findings = []
        for pod in workload.pods:
            for claim in accelerators.pod_claims(pod, []).missing:
                violation = Violation.at_pod(
                    pod, f"{claim.describe} is not in {claims.describe()}, so its devices "
                         f"cannot be counted",
                    f"create the {claim.kind} {claim.target} before the pod" + (
                        ", or give its manifest to mlgate check too"
                        if isinstance(claims, dra.Manifests) else ""),
                    "resourceClaims")
                findings.append(decisions.Finding(
                    DRA, mode, decisions.format_violation(DRA, workload, violation),
                    path=claim.pointer))
        return findings

    # -- offline (mlgate check) -------------------------------------------------
    async def check(self, obj: dict[str, Any], namespace: str = "default",
                    claims: dra.Source | None = None,
                    ) -> tuple[decisions.Decision, decisions.Decision, dict[str, Any]]:
        """Mutate then validate one manifest as the API server would on CREATE; pod
        claims are looked up in `claims` (the other manifests given), else nowhere."""
        claims = dra.Manifests([obj], namespace) if claims is None else claims
        request = admission.synthetic_request(obj, user=CHECK_USER, uid="offline",
                                              namespace=namespace)
        mutated = await self.evaluate(request, MUTATE, claims)
        result = patches.apply(obj, mutated.patch)
        validated = await self.evaluate(admission.synthetic_request(
            result, user=CHECK_USER, uid=request.uid, namespace=namespace), VALIDATE, claims)
        return mutated, validated, result


def _pod_templates(obj: Any, group: str, kind: str) -> list[tuple[str, Any, Any]]:
    """Every pod spec of an object with its pointer and template metadata, to compare."""
    return [(pod.pointer, pod.spec, (pod.metadata_holder or {}).get("metadata"))
            for pod in kind_table.view(obj, group, kind).pods]


def _key(finding: decisions.Finding) -> tuple[str, str | None, str]:
    # Compare by policy, container and message without the pointer, which shifts when
    # containers are reordered; the message names the pod path and the container.
    return finding.policy, finding.container, finding.message


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _object_name(obj: Any) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        meta = obj["metadata"]
        return str(meta.get("name") or meta.get("generateName") or "")
    return ""

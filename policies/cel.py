"""User rules written in CEL in the configuration, as Kubernetes ValidatingAdmissionPolicy.

Platform teams have rules no built-in policy knows ("training jobs in `research-*` carry a
`cost-center` label", "no container mounts the docker socket"). Writing them in CEL keeps
them in the config file, in the language of ValidatingAdmissionPolicy, instead of in Python.

Each rule is an expression that must be `true` for the object to pass, evaluated at one
scope over these variables:

- every scope: `object`, `oldObject` (null on CREATE), `request` (the admission request:
  `request.operation`, `request.userInfo.username`, `request.namespace`, ...);
- `scope: pod`: once per pod spec, plus `podSpec` (the pod-level fields), `pod`
  (`pointer`, `role`, `replicas`, `labels`, `annotations` of that pod template) and
  `accelerators`: resource -> count the pod takes, from extended resources and DRA claims
  alike (`webhook.accelerators`; -1 for `allocationMode: All` without `dra.countAll`);
- `scope: container`: once per container of every pod spec, plus `container` (the
  container dict), `containerType` (`container`, `init`, `sidecar` or `ephemeral`) and
  `accelerators` (what that container asks for, its claims included).

A rule's `message` (or `messageExpression`, a CEL string over the same variables) says what
is wrong; violations point at the pod spec or container they were found in. Expressions are
compiled when the configuration loads: a syntax error is a configuration error naming the
rule and the line and column. An expression that fails at run time (a missing field without
`has()`, a type mismatch) follows the rule's `failurePolicy`: `Fail` (the default) reports it
as a violation, `Ignore` skips the rule for that object.

Speed: the CEL binding converts every variable it is given, at about 0.4 ms per KiB, so a
rule gets only the variables it names, trimmed to the fields it selects
(`webhook.celreads`): a rule on `object.metadata.labels` no longer converts the 300
containers of a big Pod (50 ms) for every rule and every pod spec.

Modes: each rule may have its own `mode` (`enforce`, `warn`, `audit` or `off`), as in a
ValidatingAdmissionPolicy binding's validationActions. A rule's violations take the milder
of the rule's and the policy's mode, so `mode: warn` on the policy makes every rule warn,
and the engine's rules for modes (UPDATE, journal) apply to each finding alike.

Where it runs: on the event loop (`blocking = False`), with its timeout checked when it
returns. CEL evaluation is pure computation on the object: no I/O, no unbounded loops (its
cost is bounded by the expression and the object, which `maxRequestBytes` caps), and the
CEL binding holds the GIL while it evaluates, so a worker thread would not let the loop run
any sooner nor could its timeout stop it; it would only make `cel` wait for a free thread
(and time out, denying the request, while the threads are taken). It costs about 0.5 ms
per request for the two rules of `examples/mlgate.yaml` on a four-container pod.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

import cel as cel_lib
from pydantic import Field

from webhook import accelerators, celreads, policy, schema, workloads

_POSITION = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")
VARIABLES = ("object", "oldObject", "request", "podSpec", "pod", "accelerators", "container",
             "containerType")


class Rule(policy.Params):
    name: str = Field(description="Unique rule name, shown in every violation.")
    expression: str = Field(description="CEL expression that is true when the object passes.")
    message: str = Field("", description="What is wrong, for the person at kubectl apply.")
    messageExpression: str = Field(
        "", description="CEL string expression for the message; wins over `message`.")
    fix: str = Field("", description="How to fix it, appended to the message.")
    scope: Literal["object", "pod", "container"] = Field(
        "object", description="Evaluate once per object, per pod spec or per container.")
    mode: schema.Mode | None = Field(
        None, description="Unset: the policy's mode; off disables the rule; warn or audit "
                          "make this rule milder than the policy.")
    failurePolicy: Literal["Fail", "Ignore"] = Field(
        "Fail", description="When the expression errors at run time: Fail reports a "
                            "violation, Ignore skips the rule.")


class Params(policy.Params):
    rules: list[Rule] = Field(default_factory=list, description="The CEL rules, in order.")
    accelerators: list[str] = Field(
        default_factory=lambda: list(accelerators.DEFAULT_ACCELERATORS),
        description="Resource names (globs) in the `accelerators` map of pod and container "
                    "scope.")


def _counts(found: dict[str, int | None]) -> dict[str, int]:
    return {resource: -1 if count is None else count for resource, count in found.items()}


def _given(reads: dict[str, list[celreads.Path]], variables: dict[str, Any],
           ) -> dict[str, Any]:
    """The variables a rule names (of those its scope has), trimmed to what it selects."""
    return {name: celreads.trimmed(variables[name], paths) for name, paths in reads.items()
            if name in variables}


def compile_expression(rule: Rule, index: int, field: str, source: str) -> Any:
    """Compile one expression; a ValueError names the rule, the field and the position."""
    try:
        return cel_lib.compile(source)
    except Exception as exc:  # the binding raises ValueError; be sure of the wording
        text = str(exc)
        match = _POSITION.search(text)
        where = (f"line {match.group(1)}, column {match.group(2)}: {match.group(3).strip()}"
                 if match else text.splitlines()[0] if text else type(exc).__name__)
        raise ValueError(f"rules[{index}] {rule.name!r}: {field} does not compile at "
                         f"{where}") from exc


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return (f"no such field {exc.args[0]!r} (guard optional fields with has(), "
                f"e.g. has(object.spec.x) && ...)")
    text = str(exc).split(". ")[0]
    return f"{type(exc).__name__}: {text}"


class Cel(policy.ValidatingPolicy[Params]):
    """User-defined validation rules in CEL, at object, pod-spec or container scope."""

    name = "cel"
    blocking = False  # pure computation that holds the GIL anyway: see the module docstring

    def __init__(self, params: Params, env: policy.Environment | None = None) -> None:
        super().__init__(params, env)
        # Compiled once per configuration: rule name -> (expression, message expression).
        self._programs: dict[str, tuple[Any, Any | None]] = {}
        # rule name -> variable -> the field paths the rule selects from it
        self._reads: dict[str, dict[str, list[celreads.Path]]] = {}
        for index, rule in enumerate(params.rules):
            if not rule.name.strip():
                raise ValueError(f"rules[{index}]: name must not be empty")
            if rule.name in self._programs:
                raise ValueError(f"rules[{index}]: two rules are named {rule.name!r}")
            program, message = self._programs[rule.name] = self._compile(rule, index)
            named = set(program.variables()) | set(
                message.variables() if message is not None else ())
            paths = celreads.reads(f"{rule.expression}\n{rule.messageExpression}", VARIABLES)
            self._reads[rule.name] = {name: paths.get(name, [()]) for name in VARIABLES
                                      if name in named}

    def _compile(self, rule: Rule, index: int) -> tuple[Any, Any | None]:
        program = compile_expression(rule, index, "expression", rule.expression)
        message = (compile_expression(rule, index, "messageExpression", rule.messageExpression)
                   if rule.messageExpression else None)
        return program, message

    def validate(self, workload: workloads.Workload) -> Iterator[policy.Violation]:
        base = {"object": workload.obj, "oldObject": workload.context.old_object,
                "request": workload.context.request or {}}
        for rule in self.params.rules:
            if rule.mode == "off":
                continue
            program, message = self._programs[rule.name]
            reads = self._reads[rule.name]
            if rule.scope == "object":
                yield from self._run(rule, program, message, _given(reads, base), None, None)
                continue
            patterns = self.params.accelerators
            for pod in workload.pods:
                pod_vars = dict(base, podSpec=pod.spec, pod={
                    "pointer": pod.pointer, "role": pod.role, "replicas": pod.replicas,
                    "labels": pod.labels, "annotations": pod.annotations})
                if rule.scope == "pod":
                    if "accelerators" in reads:
                        pod_vars["accelerators"] = _counts(
                            accelerators.pod_resources(pod, patterns))
                    yield from self._run(rule, program, message, _given(reads, pod_vars),
                                         pod, None)
                    continue
                for container in pod.containers:
                    variables = dict(pod_vars, container=container.data,
                                     containerType=container.container_type)
                    if "accelerators" in reads:
                        asks = accelerators.container_asks(pod, container, patterns)
                        variables["accelerators"] = _counts(accelerators.by_resource(asks))
                    yield from self._run(rule, program, message, _given(reads, variables),
                                         pod, container)

    def _run(self, rule: Rule, program: Any, message: Any | None, variables: dict[str, Any],
             pod: workloads.PodSpecView | None,
             container: workloads.ContainerView | None) -> Iterator[policy.Violation]:
        try:
            result = program.execute(variables)
            if not isinstance(result, bool):
                raise TypeError(f"the expression returned {type(result).__name__}, not a bool")
        except Exception as exc:  # any evaluation error of user CEL follows failurePolicy
            if rule.failurePolicy == "Ignore":
                return
            what = f"rule {rule.name!r} could not be evaluated: {_describe_error(exc)}"
            yield self._violation(what, "fix the expression, or set failurePolicy: Ignore",
                                  pod, container, rule.mode)
            return
        if result:
            return
        text = rule.message or f"failed expression: {rule.expression}"
        if message is not None:
            try:
                rendered = message.execute(variables)
                if isinstance(rendered, str) and rendered.strip():
                    text = rendered
            except Exception:  # a broken message must not hide the violation
                pass
        yield self._violation(f"rule {rule.name!r}: {text}", rule.fix, pod, container, rule.mode)

    @staticmethod
    def _violation(what: str, fix: str, pod: workloads.PodSpecView | None,
                   container: workloads.ContainerView | None,
                   mode: schema.Mode | None) -> policy.Violation:
        if mode == "off":  # never reached: rules that are off do not run
            mode = None
        if pod is not None and container is not None:
            return policy.Violation.at_container(pod, container, what, fix, mode=mode)
        if pod is not None:
            return policy.Violation.at_pod(pod, what, fix, mode=mode)
        return policy.Violation(what=what, fix=fix, mode=mode)

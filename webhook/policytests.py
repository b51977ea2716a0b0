"""`mlgate test`: expected verdicts for manifests, checked in CI (as `kyverno test` does).

A test file is YAML with `kind: PolicyTest`. It names manifests (files or folders), an
optional configuration, and for each resource what must happen to it: the verdict, the
policies that deny or warn, and values the mutation must leave in the object. Paths are
relative to the test file. `mlgate test DIR` runs every test file under DIR through the
same engine as `mlgate check`, prints a diff of expected against actual for every
mismatch, exits 1 when one fails, and writes JUnit XML with `--junit FILE`.

    apiVersion: mlgate.io/v1alpha1
    kind: PolicyTest
    name: example manifests
    config: ../mlgate.yaml
    manifests: [../manifests]
    expect:
      - resource: PyTorchJob vision/greedy       # Kind name, or Kind namespace/name
        verdict: denied                          # allowed | denied | skipped
        deny: [gpu-limits]                       # exactly these policies deny
        warn: []                                 # exactly these policies warn
        mutatedBy: [gpu-tolerations]             # exactly these policies mutate
        mutated:                                 # JSON pointer: value after mutation
          /spec/runPolicy/backoffLimit: 3

A key left out is not checked. A mapping or list under `mutated` matches when the object
holds at least what it lists; a scalar must be equal.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from webhook import admission, cli, config, engine, errors, junit, patches, schema

API_VERSION = "mlgate.io/v1alpha1"
KIND = "PolicyTest"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TEST_SUFFIXES = (".yaml", ".yml")
NOT_SET = "(not set)"  # how a pointer that resolves to nothing shows in a diff

_IS_TEST_FILE = re.compile(rf"^kind:\s*['\"]?{KIND}['\"]?\s*(#.*)?$", re.MULTILINE)
_POLICY = re.compile(r"^\[([^\]]+)\]")
_RESOURCE = re.compile(r"^(?P<kind>[A-Za-z0-9]+) (?:(?P<namespace>[^/\s]+)/)?(?P<name>\S+)$")


# -- the file format ---------------------------------------------------------------------
class Expectation(schema.Model):
    """What must happen to one resource. Unset keys are not checked."""

    resource: str
    verdict: Literal["allowed", "denied", "skipped"] | None = None
    deny: list[str] | None = None
    warn: list[str] | None = None
    mutatedBy: list[str] | None = None
    mutated: dict[str, Any] | None = None

    @field_validator("resource")
    @classmethod
    def _kind_and_name(cls, value: str) -> str:
        if not _RESOURCE.match(value):
            raise ValueError(f"{value!r} is not 'Kind name' or 'Kind namespace/name'")
        return value

    @field_validator("mutated")
    @classmethod
    def _pointers(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for pointer in value or {}:
            if not pointer.startswith("/"):
                raise ValueError(f"{pointer!r} is not a JSON pointer (write it like "
                                 f"/spec/template/spec/tolerations)")
        return value


class Suite(schema.Model):
    """One test file: manifests, the configuration they run under, and expectations."""

    apiVersion: Literal["mlgate.io/v1alpha1"]
    kind: Literal["PolicyTest"]
    name: str = ""
    config: str | None = None
    namespace: str = "default"
    manifests: list[str] = Field(min_length=1)
    expect: list[Expectation] = Field(min_length=1)


def is_test_file(path: Path) -> bool:
    """A YAML file with a top-level `kind: PolicyTest` line (read before it is parsed, so a
    test file with broken YAML is reported, not passed over)."""
    try:
        return bool(_IS_TEST_FILE.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def find(paths: list[str]) -> list[Path]:
    """Test files: those named, and every test file under the folders named."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*")
                            if p.suffix in TEST_SUFFIXES and is_test_file(p))
            if not inside:
                raise errors.ConfigError(f"{name}: no test files in this folder (YAML files "
                                         f"with apiVersion: {API_VERSION}, kind: {KIND})")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise errors.ConfigError(f"{name}: no such file or directory")
    return found


def load(path: Path) -> Suite:
    """Read and validate a test file; every error names the file and the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.ConfigError(f"{path}: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{path}: a test file is a mapping with apiVersion: "
                                 f"{API_VERSION} and kind: {KIND}")
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise errors.ConfigError(f"{path}: {config.describe(exc)}") from exc


# -- running -----------------------------------------------------------------------------
@dataclass
class Resource:
    """One manifest as `mlgate check` judged it, and the object after mutation."""

    file: Path
    kind: str
    namespace: str
    name: str
    result: dict[str, Any]
    mutated: Any

    def label(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass
class Outcome:
    """One expectation checked: an empty diff is a pass."""

    suite: str
    test_file: Path
    resource: str
    manifest: str = ""
    diff: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    summary: str = ""  # one line on what differs
    messages_title: str = "messages:"

    @property
    def passed(self) -> bool:
        return not self.diff

    def report(self) -> str:
        """The diff and the policies' own messages, as printed and put in JUnit."""
        lines = list(self.diff)
        if self.messages:
            lines += ["", self.messages_title, *(f"  {m}" for m in self.messages)]
        return "\n".join(lines)


class Engines:
    """One engine per configuration file, shared by the test files that name it."""

    def __init__(self) -> None:
        self._built: dict[Path | None, engine.Engine] = {}

    def get(self, path: Path | None) -> engine.Engine:
        key = path.resolve() if path else None
        if key not in self._built:
            self._built[key] = engine.Engine.build(config.load(path))
        return self._built[key]

    async def aclose(self) -> None:
        for built in self._built.values():
            await built.aclose()


async def _resources(eng: engine.Engine, files: list[Path], namespace: str) -> list[Resource]:
    resources = []
    # One check over every file, so a pod finds the claim templates of the other files.
    objects = [(path, obj) for path in files for obj in cli.load_manifests(path)]
    results = await cli._check(eng, files, namespace)
    for (path, obj), result in zip(objects, results, strict=True):
        request = admission.synthetic_request(obj, user=engine.CHECK_USER, uid="offline",
                                              namespace=namespace)
        resources.append(Resource(
            path, request.kind, request.namespace,
            request.name or cli._describe(obj).partition(" ")[2], result,
            patches.apply(obj, result["patch"])))
    return resources


def _resolve(obj: Any, pointer: str) -> Any:
    """The value at a JSON pointer, or NOT_SET."""
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(obj, dict) and token in obj:
            obj = obj[token]
        elif isinstance(obj, list) and token.isdigit() and int(token) < len(obj):
            obj = obj[int(token)]
        else:
            return NOT_SET
    return obj


def _contains(actual: Any, expected: Any) -> bool:
    """Mappings and lists hold at least what is expected; scalars are equal (as JSON)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _contains(actual[key], value) for key, value in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and all(
            any(_contains(item, wanted) for item in actual) for wanted in expected)
    return type(actual) is type(expected) and actual == expected


def _policies(messages: list[str]) -> list[str]:
    return sorted({m.group(1) for message in messages if (m := _POLICY.match(message))})


def _compare(expectation: Expectation, resource: Resource) -> tuple[dict[str, Any],
                                                                     dict[str, Any]]:
    """The expected values and the actual ones, for the keys the expectation sets."""
    result = resource.result
    actual_values: dict[str, Any] = {
        "verdict": result["verdict"], "deny": _policies(result["violations"]),
        "warn": _policies(result["warnings"]), "mutatedBy": sorted(result["mutated_by"])}
    expected: dict[str, Any] = {}
    actual: dict[str, Any] = {}
    for key in ("verdict", "deny", "warn", "mutatedBy"):
        wanted = getattr(expectation, key)
        if wanted is not None:
            expected[key] = sorted(set(wanted)) if isinstance(wanted, list) else wanted
            actual[key] = actual_values[key]
    if expectation.mutated is not None:
        expected["mutated"], actual["mutated"] = {}, {}
        for pointer, wanted in expectation.mutated.items():
            found = _resolve(resource.mutated, pointer)
            expected["mutated"][pointer] = wanted
            # A match shows as the expected value, so the diff marks only what differs.
            actual["mutated"][pointer] = wanted if _contains(found, wanted) else found
    return expected, actual


def _diff(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    if expected == actual:
        return []
    old = yaml.safe_dump(expected, sort_keys=False).splitlines()
    new = yaml.safe_dump(actual, sort_keys=False).splitlines()
    lines = difflib.unified_diff(old, new, "expected", "actual", lineterm="",
                                 n=len(old) + len(new))
    return [line for line in lines if not line.startswith("@@")]


def _check_one(suite: str, test_file: Path, expectation: Expectation,
               resources: list[Resource]) -> Outcome:
    match = _RESOURCE.match(expectation.resource)
    assert match is not None  # the model validated it
    kind, namespace, name = match.group("kind", "namespace", "name")
    found = [r for r in resources if r.kind == kind and r.name == name
             and (namespace is None or r.namespace == namespace)]
    outcome = Outcome(suite, test_file, expectation.resource)
    if len(found) != 1:
        known = sorted({f"{r.label()} ({r.file})" for r in resources
                        if r.kind == kind and r.name == name} if found else
                       {r.label() for r in resources})
        problem = (f"{len(found)} resources match: name the namespace (Kind namespace/name)"
                   if found else "no such resource in the manifests of this test file")
        outcome.diff = ["--- expected", "+++ actual", f"-resource: {expectation.resource}",
                        f"+{problem}"]
        outcome.messages = known
        outcome.messages_title = "resources of that kind and name:" if found else (
            "resources in the manifests:")
        outcome.summary = f"{expectation.resource}: {problem}"
        return outcome
    resource = found[0]
    outcome.manifest = str(resource.file)
    expected, actual = _compare(expectation, resource)
    outcome.diff = _diff(expected, actual)
    differ = [key for key in expected if expected[key] != actual[key]]
    outcome.summary = f"expected and actual differ in {', '.join(differ)}" if differ else ""
    if outcome.diff and expected.keys() & {"verdict", "deny", "warn"}:
        outcome.messages = ([f"deny: {m}" for m in resource.result["violations"]]
                            + [f"warn: {m}" for m in resource.result["warnings"]])
    return outcome


async def run_one(test_file: Path, suite: Suite, engines: Engines) -> list[Outcome]:
    """Every expectation of one test file, checked against what the engine decides."""
    base = test_file.parent
    try:
        eng = engines.get(base / suite.config if suite.config else None)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{test_file}: config: {exc}") from exc
    try:
        named = [os.path.normpath(base / manifest) for manifest in suite.manifests]
        files = [path for path in cli._manifest_files(named)
                 if path.suffix not in TEST_SUFFIXES or not is_test_file(path)]
        resources = await _resources(eng, files, suite.namespace)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{test_file}: manifests: {exc}") from exc
    except OSError as exc:
        raise errors.ConfigError(f"{test_file}: manifests: {exc.filename}: "
                                 f"{exc.strerror}") from exc
    name = suite.name or test_file.stem
    return [_check_one(name, test_file, expectation, resources) for expectation in suite.expect]


async def run(suites: list[tuple[Path, Suite]]) -> list[Outcome]:
    """Every test file in one event loop (policies may keep loop-bound clients)."""
    engines = Engines()
    try:
        return [outcome for path, suite in suites
                for outcome in await run_one(path, suite, engines)]
    finally:
        await engines.aclose()


# -- the command -------------------------------------------------------------------------
def _print(outcomes: list[Outcome]) -> None:
    current = None
    for outcome in outcomes:
        if outcome.test_file != current:
            current = outcome.test_file
            print(f"{outcome.test_file} ({outcome.suite})")
        if outcome.passed:
            print(f"  ok    {outcome.resource}")
            continue
        where = f"  ({outcome.manifest})" if outcome.manifest else ""
        print(f"  FAIL  {outcome.resource}{where}")
        for line in outcome.report().splitlines():
            print(f"        {line}".rstrip())
    failed = sum(not o.passed for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed")


def _junit_suites(outcomes: list[Outcome]) -> list[junit.TestSuite]:
    suites: dict[Path, junit.TestSuite] = {}
    for outcome in outcomes:
        suite = suites.setdefault(outcome.test_file, junit.TestSuite(
            outcome.suite, str(outcome.test_file)))
        suite.cases.append(junit.TestCase(
            name=outcome.resource, classname=outcome.suite, file=outcome.manifest,
            failure=None if outcome.passed else outcome.report(), message=outcome.summary))
    return list(suites.values())


def command(args: argparse.Namespace) -> int:
    try:
        outcomes = asyncio.run(run([(path, load(path)) for path in find(args.paths)]))
    except errors.ConfigError as exc:
        print(f"mlgate test: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(outcomes)
    if args.junit:
        try:
            junit.write(args.junit, _junit_suites(outcomes))
        except OSError as exc:
            print(f"mlgate test: --junit {args.junit}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK if all(o.passed for o in outcomes) else EXIT_FAILED


def add_arguments(sub: Any) -> None:
    """Register `mlgate test` on the command's subparsers."""
    test = sub.add_parser("test", help="check manifests against expected verdicts (for CI)",
                          description="Run test files (kind: PolicyTest): manifests, "
                          "a configuration and the verdicts expected of them.")
    test.add_argument("paths", nargs="+", metavar="PATH",
                      help="a test file, or a folder searched for test files")
    test.add_argument("--junit", metavar="FILE", default=None,
                      help="also write the results as JUnit XML")
    test.set_defaults(func=command)

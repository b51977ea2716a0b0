"""JUnit XML, the report format CI systems show as a test tab (GitLab, Jenkins, GitHub
actions that read test reports). Only the subset they all read: testsuites, testsuite,
testcase and failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree


@dataclass
class TestCase:
    """One check; `failure` holds the text to show when it failed, `message` its gist."""

    __test__ = False  # not a pytest test class

    name: str
    classname: str
    file: str = ""
    failure: str | None = None
    message: str = "failed"


@dataclass
class TestSuite:
    """A group of cases, e.g. one test file."""

    __test__ = False

    name: str
    file: str = ""
    cases: list[TestCase] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(case.failure is not None for case in self.cases)


def render(suites: list[TestSuite], name: str = "mlgate test") -> str:
    root = ElementTree.Element("testsuites", name=name,
                               tests=str(sum(len(s.cases) for s in suites)),
                               failures=str(sum(s.failures for s in suites)), errors="0")
    for suite in suites:
        element = ElementTree.SubElement(root, "testsuite", name=suite.name,
                                         tests=str(len(suite.cases)),
                                         failures=str(suite.failures), errors="0", skipped="0")
        if suite.file:
            element.set("file", suite.file)
        for case in suite.cases:
            attributes = {"name": case.name, "classname": case.classname}
            if case.file:
                attributes["file"] = case.file
            testcase = ElementTree.SubElement(element, "testcase", attributes)
            if case.failure is not None:
                failure = ElementTree.SubElement(testcase, "failure", message=case.message,
                                                 type="mismatch")
                failure.text = case.failure
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write(path: str | Path, suites: list[TestSuite]) -> None:
    Path(path).write_text(render(suites), encoding="utf-8")

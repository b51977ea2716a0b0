"""mlgate gives the verdicts Kyverno's and Gatekeeper's own test suites expect.

Each suite's cases run through the engine with the configuration equivalent to the peer's
policy (tests/peers/suites.py); `python -m tests.peers.suites` prints the table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers import suites
from webhook import plugins

SUITES = sorted([f"kyverno/{name}" for name in suites.KYVERNO]
                + [f"gatekeeper/{name}" for name in suites.GATEKEEPER])


@pytest.fixture(scope="module")
def cases(shared_dir: Path) -> list[suites.Case]:
    return suites.all_cases(shared_dir / "peer-suites")


@pytest.fixture(scope="module")
def catalogue() -> plugins.Catalogue:
    return plugins.discover()


@pytest.mark.corpus
@pytest.mark.parametrize("suite", SUITES)
def test_suite_agrees(suite: str, cases: list[suites.Case], catalogue: plugins.Catalogue) -> None:
    mine = [c for c in cases if c.suite == suite]
    assert mine, f"{suite}: no cases found in ../shared/peer-suites"
    policy = next(c.policy for c in mine)
    if policy not in catalogue.policies:
        pytest.fail(f"{suite}: the policy {policy!r} it compares is not installed")
    tally = suites.agreement(mine, catalogue)[suite]
    print(f"{suite}: {tally.figure()}")
    if suite in suites.OUT_OF_SCOPE_SUITES:
        assert tally.compared == 0 and tally.out_of_scope == len(mine)
        return
    assert tally.compared > 0, f"{suite}: every case is out of scope"
    assert not tally.disagreements, "\n".join(tally.disagreements)


@pytest.mark.corpus
def test_pss_defaults_agree_with_every_baseline_case(cases: list[suites.Case],
                                                     catalogue: plugins.Catalogue) -> None:
    """Without any peer-specific parameter, the PSS baseline agrees with Kyverno's cases."""
    baseline = [c for c in cases if c.policy == "pod-security" and c.suite.startswith("kyverno/")]
    for case in baseline:
        case.settings = suites.BASELINE
    tallies = suites.agreement(baseline, catalogue)
    assert len(tallies) == 10
    for suite, tally in tallies.items():
        assert tally.compared and not tally.disagreements, (suite, tally.disagreements)


@pytest.mark.corpus
def test_a_changed_setting_changes_verdicts(cases: list[suites.Case],
                                            catalogue: plugins.Catalogue) -> None:
    """The comparison can fail: allowing hostPorts makes the peers' bad cases pass."""
    ports = [c for c in cases if c.suite == "kyverno/disallow-host-ports"]
    for case in ports:
        case.settings = {"mode": "enforce", "params": {"allowedHostPorts": ["1-65535"]}}
    tally = suites.agreement(ports, catalogue)["kyverno/disallow-host-ports"]
    assert tally.agreed == sum(not c.expected for c in ports) and tally.disagreements

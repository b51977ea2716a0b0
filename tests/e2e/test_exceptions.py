"""Policy exceptions through the real API server: `kubectl apply` of a Pod an exception lets
through shows a warning naming the exception and its expiry; the same Pod under an
exception that expired yesterday is denied; the journal and the report show the change."""

from __future__ import annotations

import datetime as dt
import time

import yaml

from tests.e2e.cluster import Mlgate
from tests.e2e.test_apply import NO_LIMITS, apply, pod

TODAY = dt.datetime.now(dt.UTC).date()
NEXT_WEEK = (TODAY + dt.timedelta(days=7)).isoformat()
YESTERDAY = (TODAY - dt.timedelta(days=1)).isoformat()


def exception(namespace: str, names: list[str], expires: str) -> dict[str, object]:
    return {"policies": ["require-limits"], "match": {"namespaces": [namespace],
                                                      "kinds": ["Pod"], "names": names},
            "containers": ["trainer"], "reason": "legacy trainer; v2 image sets limits",
            "owner": "team-a@example.com", "expires": expires}


def test_an_exception_lets_a_pod_through_until_it_expires(gate: Mlgate, namespace: str) -> None:
    config = yaml.safe_load(gate.config_file.read_text())
    config["exceptions"] = {"legacy-trainer": exception(namespace, ["legacy-*"], NEXT_WEEK),
                            "old-trainer": exception(namespace, ["old-*"], YESTERDAY)}
    gate.configure(config)

    allowed = apply(gate, namespace, pod("legacy-train", NO_LIMITS), check=True)
    assert "pod/legacy-train created" in allowed.stdout
    warnings = [line for line in allowed.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings, allowed.stderr
    assert all(f"[require-limits] allowed by exception legacy-trainer (owner "
               f"team-a@example.com, expires {NEXT_WEEK}): Pod {namespace}/legacy-train" in line
               and 'container "trainer"' in line for line in warnings), allowed.stderr

    # The same Pod under the exception that expired yesterday: denied, naming it.
    denied = apply(gate, namespace, pod("old-train", NO_LIMITS))
    assert denied.returncode == 1
    assert 'admission webhook "validate.mlgate.io" denied the request' in denied.stderr
    assert "[require-limits]" in denied.stderr
    assert f"[exception old-trainer expired {YESTERDAY}]" in denied.stderr
    missing = gate.plane.kubectl("get", "pod", "old-train", "-n", namespace, check=False)
    assert missing.returncode == 1

    # Journaled as changed by the exception, and in the report (expiring within 14 days).
    deadline = time.monotonic() + 15
    while True:
        records = [r for r in gate.journaled(namespace=namespace)
                   if r["phase"] == "validate" and r["name"] == "legacy-train"]
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert records and records[0]["exceptions"] == ["legacy-trainer"]
    assert records[0]["decision"] == "warned"
    with gate.client() as client:
        report = client.get("/audit/report", params={"namespace": namespace},
                            headers=gate.audit_headers()).json()
    excepted = report["exceptions"]
    assert [e["name"] for e in excepted["expiring"]] == ["legacy-trainer"]
    assert {(a["exception"], a["policy"], a["decisions"]) for a in excepted["applied"]} == {
        ("legacy-trainer", "require-limits", 1)}
    assert [r["name"] for r in excepted["recent"]] == ["legacy-train"]


def test_with_the_annotation_option_only_objects_naming_the_exception_get_it(
        gate: Mlgate, namespace: str) -> None:
    config = yaml.safe_load(gate.config_file.read_text())
    config["exceptions"] = {"legacy-trainer": exception(namespace, ["legacy-*"], NEXT_WEEK)}
    config["exceptionsRequireAnnotation"] = True
    gate.configure(config)

    plain = apply(gate, namespace, pod("legacy-plain", NO_LIMITS))
    assert plain.returncode == 1 and "[require-limits]" in plain.stderr
    assert "allowed by exception" not in plain.stderr

    annotated = pod("legacy-named", NO_LIMITS)
    annotated["metadata"]["annotations"] = {"mlgate.io/exception": "legacy-trainer"}
    allowed = apply(gate, namespace, annotated, check=True)
    assert "pod/legacy-named created" in allowed.stdout
    assert "allowed by exception legacy-trainer" in allowed.stderr

    typo = pod("legacy-typo", NO_LIMITS)
    typo["metadata"]["annotations"] = {"mlgate.io/exception": "legacy-trainr"}
    refused = apply(gate, namespace, typo)
    assert refused.returncode == 1
    assert ("annotation mlgate.io/exception names legacy-trainr, which is not a configured "
            "exception (configured: legacy-trainer)") in refused.stderr, refused.stderr

"""Events for denials, read back with `kubectl get events` from the real API server.

The session release writes Events as the chart's ServiceAccount (its token kubeconfig), so
the chart's events.k8s.io RBAC is what is used.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import yaml

from tests.e2e.cluster import Mlgate
from tests.e2e.test_apply import NO_LIMITS, apply, pod

DENIED = "AdmissionDenied"


def events(gate: Mlgate, namespace: str, *selector: str) -> list[dict[str, Any]]:
    out = gate.plane.kubectl("get", "events", "-n", namespace, "-o", "json", *selector).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.3)


def denied_about(gate: Mlgate, namespace: str, name: str) -> list[dict[str, Any]]:
    return [e for e in events(gate, namespace, f"--field-selector=reason={DENIED}")
            if f"Pod {namespace}/{name} " in e["message"]]


def events_metric(gate: Mlgate, result: str) -> float:
    with gate.client() as client:
        text = client.get("/metrics").text
    match = re.search(rf'^mlgate_events_total{{result="{result}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_denial_is_an_event_in_the_namespace_naming_the_object(gate: Mlgate,
                                                                  namespace: str) -> None:
    assert apply(gate, namespace, pod("nolimits", NO_LIMITS)).returncode == 1
    (event,) = wait_for("the AdmissionDenied event",
                        lambda: denied_about(gate, namespace, "nolimits"))
    assert event["type"] == "Warning" and event["reason"] == DENIED
    # regarding: the Namespace (the Pod was never stored); related: the denied Pod
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Namespace",
                                       "name": namespace, "namespace": namespace}
    assert event["related"] == {"apiVersion": "v1", "kind": "Pod", "name": "nolimits",
                                "namespace": namespace}
    assert event["reportingComponent"] == "mlgate.io/webhook"
    assert "denied by require-limits" in event["message"]
    assert "[require-limits]" in event["message"] and 'container "trainer"' in event["message"]
    name = event["metadata"]["name"]
    shown = gate.plane.kubectl("get", "event", name, "-n", namespace, "-o", "yaml").stdout
    print(f"--- kubectl get event {name} -n {namespace} -o yaml\n{shown}")
    listed = gate.plane.kubectl("get", "events", "-n", namespace).stdout
    assert re.search(rf"Warning\s+{DENIED}\s+namespace/{namespace}", listed), listed


def test_a_server_dry_run_denial_emits_no_event(gate: Mlgate, namespace: str) -> None:
    dry = apply(gate, namespace, pod("drydenied", NO_LIMITS), "--dry-run=server")
    assert dry.returncode == 1 and "[require-limits]" in dry.stderr
    # A real denial afterwards: once its Event is there, the queue is past the dry run.
    assert apply(gate, namespace, pod("realdenied", NO_LIMITS)).returncode == 1
    wait_for("the real denial's event", lambda: denied_about(gate, namespace, "realdenied"))
    assert denied_about(gate, namespace, "drydenied") == []
    assert len(events(gate, namespace)) == 1


def test_repeated_denials_are_one_event_with_a_count(gate: Mlgate, namespace: str) -> None:
    """A crash-looping controller re-creating the same object: one Event, its count grows."""
    for _ in range(5):
        assert apply(gate, namespace, pod("looping", NO_LIMITS)).returncode == 1
    (event,) = wait_for("the series count to reach 5", lambda: [
        e for e in denied_about(gate, namespace, "looping")
        if e.get("series", {}).get("count") == 5])
    assert event["series"]["count"] == 5
    assert len(denied_about(gate, namespace, "looping")) == 1


def test_distinct_denials_are_rate_limited_per_namespace(gate: Mlgate, namespace: str) -> None:
    config = yaml.safe_load(gate.config_file.read_text())
    config["audit"]["events"] = {"burst": 3, "perMinute": 0.01}
    gate.configure(config)
    limited = events_metric(gate, "limited")
    for index in range(6):
        assert apply(gate, namespace, pod(f"burst-{index}", NO_LIMITS)).returncode == 1
    wait_for("3 events over the rate",
             lambda: events_metric(gate, "limited") >= limited + 3)
    emitted = events(gate, namespace, f"--field-selector=reason={DENIED}")
    assert len(emitted) == 3, [e["message"][:60] for e in emitted]
    assert events_metric(gate, "limited") == limited + 3


def test_events_can_be_switched_off(gate: Mlgate, namespace: str) -> None:
    config = yaml.safe_load(gate.config_file.read_text())
    config["audit"]["events"] = {"enabled": False}
    gate.configure(config)
    assert apply(gate, namespace, pod("quiet", NO_LIMITS)).returncode == 1
    gate.configure(yaml.safe_load((gate.workdir / "chart-config.yaml").read_text()) | {
        "audit": {**config["audit"], "events": {"enabled": True}}})
    assert apply(gate, namespace, pod("loud", NO_LIMITS)).returncode == 1
    wait_for("the event after switching on", lambda: denied_about(gate, namespace, "loud"))
    assert denied_about(gate, namespace, "quiet") == []

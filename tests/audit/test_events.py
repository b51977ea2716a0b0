"""The Event recorder: which decisions make Events, dedup into series, rate limits, no client."""

from __future__ import annotations

import asyncio
from typing import Any

from webhook import decisions, engine
from webhook.audit import events, settings
from webhook.audit.kube import ApiError


def decision(**overrides: Any) -> decisions.Decision:
    fields: dict[str, Any] = dict(
        uid="u", phase=engine.VALIDATE, operation="CREATE", group="", kind="Pod",
        namespace="team-a", name="train", user="alice", groups=(), dry_run=False,
        allowed=False, message="[require-limits] Pod team-a/train: no cpu limit",
        findings=[decisions.Finding("require-limits", "enforce", "no cpu limit")])
    fields.update(overrides)
    return decisions.Decision(**fields)


class FakeApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, str]] = []
        self.missing: set[str] = set()

    def request(self, method: str, path: str, body: Any = None,
                query: list[tuple[str, Any]] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        self.calls.append((method, path, body, content_type))
        if method == "PATCH" and path.rsplit("/", 1)[1] in self.missing:
            raise ApiError(404, "not found")
        return {}

    def created(self) -> list[dict[str, Any]]:
        return [body for method, _, body, _ in self.calls if method == "POST"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorder(api: Any, **cfg: Any) -> tuple[events.Recorder, Clock]:
    clock = Clock()
    config = settings.EventSettings(**cfg)
    return events.Recorder(lambda: config, lambda: api, "mlgate-0", clock), clock


def test_a_denial_regards_the_namespace_and_names_the_object() -> None:
    item = events.denial(decision())
    assert item is not None
    assert item.namespace == "team-a" and item.reason == "AdmissionDenied"
    # The API server refuses an empty regarding.namespace in a namespaced Event.
    assert dict(item.regarding) == {"apiVersion": "v1", "kind": "Namespace", "name": "team-a",
                                    "namespace": "team-a"}
    assert dict(item.related) == {"apiVersion": "v1", "kind": "Pod", "name": "train",
                                  "namespace": "team-a"}
    assert item.note.startswith("Pod team-a/train CREATE by alice denied by require-limits: ")


def test_no_event_for_allowed_or_dry_run_requests() -> None:
    assert events.denial(decision(allowed=True)) is None
    assert events.denial(decision(dry_run=True)) is None


def test_a_cluster_scoped_denial_lives_in_default_and_notes_are_bounded() -> None:
    item = events.denial(decision(namespace="", group="argoproj.io",
                                  kind="ClusterWorkflowTemplate", message="x" * 5000))
    assert item is not None and item.namespace == "default"
    assert dict(item.regarding) == {"kind": "ClusterWorkflowTemplate", "name": "train"}
    assert len(item.note.encode()) <= events.NOTE_LIMIT and item.note.endswith("...")


def test_a_scan_finding_regards_the_object_by_uid() -> None:
    row = {"kind": "Pod", "namespace": "team-a", "name": "x", "api_version": "v1", "uid": "u1",
           "violations": [{"policy": "require-limits", "message": "[require-limits] no cpu"}]}
    item = events.violation(row)
    assert item.reason == "PolicyViolation" and item.action == "Scan"
    assert dict(item.regarding)["uid"] == "u1"
    assert item.note == "violates require-limits: [require-limits] no cpu"


def test_repeats_fold_into_one_event_s_series() -> None:
    api = FakeApi()
    rec, clock = recorder(api)

    async def run() -> None:
        item = events.denial(decision())
        assert item is not None
        for _ in range(4):
            await rec.handle(item)
        await rec.flush()
        assert [c[0] for c in api.calls] == ["POST"]  # series written at most every 10 s
        clock.now += events.SERIES_EVERY
        await rec.flush()
        await rec.flush()
        patches = [c for c in api.calls if c[0] == "PATCH"]
        assert len(patches) == 1
        _, path, body, content_type = patches[0]
        assert body["series"]["count"] == 4 and content_type == "application/merge-patch+json"
        assert path.endswith(api.created()[0]["metadata"]["name"])
        # The Event expired meanwhile (event TTL): it is created again with its count.
        api.missing.add(api.created()[0]["metadata"]["name"])
        await rec.handle(item)
        clock.now += events.SERIES_EVERY
        await rec.flush()
        assert api.created()[-1]["series"]["count"] == 5
        assert len(api.created()) == 2

    asyncio.run(run())
    event = api.created()[0]
    assert event["apiVersion"] == "events.k8s.io/v1" and event["type"] == "Warning"
    assert event["reportingController"] == "mlgate.io/webhook"
    assert event["reportingInstance"] == "mlgate-0" and event["action"] == "Admit"
    assert event["metadata"]["name"].startswith("team-a.")


def test_after_the_dedup_window_a_repeat_is_a_new_event() -> None:
    api = FakeApi()
    rec, clock = recorder(api, dedupWindow="1m")

    async def run() -> None:
        item = events.denial(decision())
        await rec.handle(item)  # type: ignore[arg-type]
        clock.now += 61
        await rec.flush()
        assert not rec.seen  # forgotten
        await rec.handle(item)  # type: ignore[arg-type]

    asyncio.run(run())
    assert len(api.created()) == 2


def test_new_events_are_rate_limited_per_namespace() -> None:
    api = FakeApi()
    rec, clock = recorder(api, burst=2, perMinute=6)

    async def run() -> None:
        for namespace in ("team-a", "team-b"):
            for index in range(4):
                await rec.handle(events.denial(  # type: ignore[arg-type]
                    decision(name=f"p{index}", namespace=namespace)))
        clock.now += 10  # 6 a minute: one more token
        await rec.handle(events.denial(decision(name="late")))  # type: ignore[arg-type]
        await rec.handle(events.denial(decision(name="later")))  # type: ignore[arg-type]

    asyncio.run(run())
    notes = [e["note"].split(" CREATE")[0] for e in api.created()]
    assert notes == ["Pod team-a/p0", "Pod team-a/p1", "Pod team-b/p0", "Pod team-b/p1",
                     "Pod team-a/late"]


def test_the_observer_only_queues_and_follows_the_switches() -> None:
    api = FakeApi()
    config = settings.EventSettings(queueSize=2)
    rec = events.Recorder(lambda: config, lambda: api, "x")
    rec.observe(decision(allowed=True))
    rec.observe(decision(dry_run=True))
    assert rec.queue.qsize() == 0
    for _ in range(3):
        rec.observe(decision())  # the third is dropped: the queue holds 2
    assert rec.queue.qsize() == 2 and api.calls == []  # nothing written on the hot path
    config = settings.EventSettings(denials=False)
    rec.observe(decision())
    config = settings.EventSettings(enabled=False)
    rec.found({"kind": "Pod", "namespace": "a", "name": "x", "api_version": "v1",
               "violations": [{"policy": "p", "message": "m"}]})
    assert rec.queue.qsize() == 2


def test_the_writer_drains_the_queue_and_without_a_cluster_writes_nothing() -> None:
    async def run(api: Any) -> None:
        config = settings.EventSettings()
        rec = events.Recorder(lambda: config, lambda: api, "x")
        rec.start()
        rec.observe(decision())
        for _ in range(100):
            if rec.queue.empty() and (api is None or api.calls):
                break
            await asyncio.sleep(0.01)
        await rec.close()

    api = FakeApi()
    asyncio.run(run(api))
    assert len(api.created()) == 1
    asyncio.run(run(None))  # no client (not in a pod, no kubeconfig): dropped quietly

"""Property-based tests: random workloads and random reviews through the real app.

The app is `create_app` served in-process through httpx's ASGITransport (no TLS: the
integration tests cover the wire over HTTPS). What must hold for every input:

- the answer is a valid AdmissionReview (apiVersion and uid echoed) or a 4xx, never a 5xx;
- a patch applies with the `jsonpatch` library to the object it was computed from;
- the patched object keeps its kind's schema: core kinds validate against the Kubernetes
  OpenAPI schema (kubernetes-validate, offline), and every pod spec embedded in a CRD still
  validates as the spec of a core Pod;
- mutation is idempotent: a second pass over the patched object answers without a patch.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests import factories
from tests.property import strategies
from webhook import app as app_module
from webhook import kind_table, workloads
from webhook.runtime import Runtime

K8S_VERSION = kubernetes_validate.utils.latest_version()
CORE_GROUPS = ("", "apps", "batch")
# Keys of inline containers that belong to the CRD, not to a core Container.
CRD_CONTAINER_KEYS = {"storageUri", "modelFormat", "protocolVersion", "runtime", "source",
                      "dependencies", "mirrorVolumeMounts", "type", "config"}

FULL_CONFIG = factories.EVERY_DEFAULT_EDITING

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Client:
    """A synchronous face for an httpx client on the ASGI app (hypothesis tests are sync)."""

    def __init__(self, runtime: Runtime) -> None:
        self.loop = asyncio.new_event_loop()
        # The lifespan (config and TLS file watchers) is not started: nothing to watch here.
        transport = httpx.ASGITransport(app=app_module.create_app(runtime))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://mlgate.test")

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.post(path, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture(scope="module", params=["defaults", "full"])
def client(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    path = None
    if request.param == "full":
        path = tmp_path_factory.mktemp("config") / "mlgate.yaml"
        path.write_text(yaml.safe_dump(FULL_CONFIG))
    runtime = Runtime(path, environ={})
    runtime.load()
    client = Client(runtime)
    yield client
    client.loop.run_until_complete(runtime.engine.aclose())
    client.close()


# -- checks ---------------------------------------------------------------------------
def answer_of(client: Client, path: str, review: Any) -> dict[str, Any] | None:
    """POST a review; the response when 200 (checked to be well formed), None when 4xx."""
    response = client.post(path, content=json.dumps(review).encode(),
                           headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        assert response.json()["error"], "a 4xx must say why"
        return None
    body = response.json()
    assert body["apiVersion"] == review["apiVersion"]
    assert body["kind"] == "AdmissionReview"
    answer: dict[str, Any] = body["response"]
    assert answer["uid"] == review["request"]["uid"]
    assert isinstance(answer["allowed"], bool)
    if not answer["allowed"]:
        assert answer["status"]["code"] >= 400 and answer["status"]["message"]
    if "patch" in answer:
        assert path == "/mutate", "/validate must never patch"
        assert answer["patchType"] == "JSONPatch"
        assert answer["allowed"] is True
    for warning in answer.get("warnings", []):
        assert len(warning) <= 256
    return answer


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in answer:
        return []
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(answer["patch"]))
    assert ops, "an empty patch must be left out"
    return ops


def _as_core_container(data: dict[str, Any], index: int) -> dict[str, Any]:
    container = {k: v for k, v in data.items() if k not in CRD_CONTAINER_KEYS}
    container.setdefault("name", f"inline-{index}")
    return container


def core_pod_of(pod: workloads.PodSpecView) -> dict[str, Any]:
    """The embedded pod spec as a core Pod (KServe and Argo keep containers inline)."""
    if pod.pointer.endswith("/spec") and not pod.labels_inline:
        spec = pod.spec
    else:
        spec = {"containers": [], "initContainers": []}
        for index, container in enumerate(pod.containers):
            # Argo sidecars and init containers both run beside the main container
            regular = container.container_type == workloads.CONTAINER
            target = "containers" if regular else "initContainers"
            spec[target].append(_as_core_container(container.data, index))
        for key in ("tolerations", "nodeSelector"):
            if key in pod.spec:
                spec[key] = pod.spec[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "embedded"}, "spec": spec}


def assert_schema(obj: dict[str, Any]) -> None:
    """Core kinds against their OpenAPI schema; CRDs: every embedded pod spec as a Pod."""
    workload = kind_table.view(obj)
    if workload.group in CORE_GROUPS:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        return
    for pod in workload.pods:
        kubernetes_validate.validate(core_pod_of(pod), K8S_VERSION, strict=True)


def review_for(obj: dict[str, Any], operation: str, api_version: str, dry_run: bool,
               ) -> dict[str, Any]:
    old = copy.deepcopy(obj) if operation == "UPDATE" else None
    return factories.admission_review(obj, operation=operation, old=old, api_version=api_version,
                                      dry_run=dry_run)


# -- properties -------------------------------------------------------------------------
@PROPERTY
@given(obj=strategies.workload_objects(),
       operation=st.sampled_from(["CREATE", "UPDATE"]),
       api_version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]),
       dry_run=st.booleans())
def test_mutation_applies_keeps_the_schema_and_is_idempotent(
        client: Client, obj: dict[str, Any], operation: str, api_version: str,
        dry_run: bool) -> None:
    assert_schema(obj)  # the generator makes valid objects; anything else is a test bug
    before = kind_table.view(obj)
    answer = answer_of(client, "/mutate", review_for(obj, operation, api_version, dry_run))
    assert answer is not None
    ops = patch_of(answer)
    event(f"{before.kind} {operation}: {'patched' if ops else 'no patch'}")
    if operation == "UPDATE" and not (before.kind_spec and before.kind_spec.template_mutable):
        assert ops == [], f"the pod spec of a {before.kind} cannot change on UPDATE"
    patched = jsonpatch.JsonPatch(ops).apply(obj)  # raises when it does not apply
    assert_schema(patched)
    after = kind_table.view(patched)
    assert [p.pointer for p in after.pods] == [p.pointer for p in before.pods]
    assert [c.pointer for _, c in after.containers()] == \
        [c.pointer for _, c in before.containers()]

    again = answer_of(client, "/mutate", review_for(patched, operation, api_version, dry_run))
    assert again is not None
    assert patch_of(again) == [], "a second mutation pass must not change anything"

    validated = answer_of(client, "/validate",
                          review_for(patched, operation, api_version, dry_run))
    assert validated is not None and "patch" not in validated


@settings(PROPERTY, max_examples=50)
@given(obj=strategies.workload_objects())
def test_accelerator_pods_tolerate_their_taint_after_mutation(
        client: Client, obj: dict[str, Any]) -> None:
    answer = answer_of(client, "/mutate", review_for(obj, "CREATE", "admission.k8s.io/v1", False))
    assert answer is not None
    patched = jsonpatch.JsonPatch(patch_of(answer)).apply(obj)
    for pod in kind_table.view(patched).pods:
        for resource in pod.resources_matching(["nvidia.com/gpu", "amd.com/gpu", "google.com/tpu"]):
            assert pod.tolerates(resource), f"{pod.pointer} does not tolerate {resource}"


@st.composite
def damaged_reviews(draw: st.DrawFn) -> dict[str, Any]:
    """A real review with random parts removed or replaced by garbage."""
    obj = draw(strategies.workload_objects())
    operation = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]))
    if operation == "DELETE":
        review = factories.admission_review(None, old=obj, operation="DELETE")
    else:
        old = obj if operation == "UPDATE" else None
        review = factories.admission_review(obj, operation=operation, old=old)
    review["apiVersion"] = draw(st.sampled_from(
        ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]))
    request = review["request"]
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(strategies.REQUEST_KEYS))
        action = draw(st.sampled_from(["drop", "garbage", "null"]))
        if action == "drop":
            request.pop(key, None)
        else:
            request[key] = None if action == "null" else draw(strategies.garbage)
    if draw(st.integers(0, 9)) == 0:
        review[draw(st.sampled_from(["apiVersion", "kind", "request"]))] = \
            draw(strategies.garbage)
    return review


@PROPERTY
@given(review=damaged_reviews(), path=st.sampled_from(["/mutate", "/validate"]))
def test_any_review_gets_an_admission_review_or_a_4xx(
        client: Client, review: dict[str, Any], path: str) -> None:
    answer = answer_of(client, path, review)
    event("4xx" if answer is None else f"200 allowed={answer['allowed']}")
    if answer is None:
        return
    ops = patch_of(answer)
    if ops:
        request = review["request"]
        assert request["operation"] in ("CREATE", "UPDATE")
        jsonpatch.JsonPatch(ops).apply(request["object"])


@settings(PROPERTY, max_examples=50)
@given(body=st.one_of(st.binary(max_size=200),
                      strategies.garbage.map(lambda v: json.dumps(v).encode())))
def test_garbage_bodies_get_a_4xx(client: Client, body: bytes) -> None:
    response = client.post("/validate", content=body,
                           headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]
    # and the next request is served normally
    ok = client.post("/validate", json=factories.admission_review(factories.pod()))
    assert ok.status_code == 200


def test_the_app_fixture_serves_the_configured_policies(client: Client) -> None:
    """Guards the properties above against passing vacuously on an app without policies."""
    gpu = factories.pod(factories.pod_spec(factories.container(limits=factories.GPU)))
    answer = answer_of(client, "/mutate", factories.admission_review(gpu))
    assert answer is not None
    paths = {op["path"] for op in patch_of(answer)}
    assert "/spec/tolerations" in paths


def test_strategies_cover_every_workload_kind_in_the_table() -> None:
    assert set(strategies.BUILDERS) == {(s.group, s.kind) for s in kind_table.WORKLOAD_KINDS}


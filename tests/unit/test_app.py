"""The app's wiring: readiness, observers and services given to `create_app`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests import factories
from webhook import app as app_module
from webhook import decisions, errors
from webhook.runtime import Runtime


class Recorder:
    """A service that notes when it starts and stops."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def client(app: FastAPI) -> httpx.AsyncClient:
    """A client that does not run the lifespan (`running()` does)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    async with app.router.lifespan_context(app):
        yield


async def test_not_ready_until_the_configuration_and_policies_are_loaded() -> None:
    app = app_module.create_app(Runtime(environ={}))
    async with client(app) as http:
        response = await http.get("/readyz")
        assert response.status_code == 503
        assert response.json()["problems"] == ["policies are not loaded"]
        async with running(app):
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert "require-limits" in ready.json()["policies"]
        # Shutting down: not ready any more, so the Service stops sending requests.
        after = await http.get("/readyz")
        assert after.json()["problems"] == ["the server is starting or shutting down"]


async def test_a_configuration_that_does_not_load_keeps_the_server_from_starting(
        tmp_path: Path) -> None:
    path = tmp_path / "mlgate.yaml"
    path.write_text("policies: {require-limits: {params: {containerKinds: [containers]}}}\n")
    runtime = Runtime(path, environ={})
    with pytest.raises(errors.ConfigError, match=r"require-limits\.params\.containerKinds"):
        async with running(app_module.create_app(runtime)):
            pass
    assert not runtime.ready


async def test_services_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    app = app_module.create_app(Runtime(environ={}), services=[
        Recorder("journal", log), Recorder("scan", log)])
    async with running(app):
        assert log == ["start journal", "start scan"]
    assert log == ["start journal", "start scan", "stop scan", "stop journal"]


async def test_a_service_that_fails_to_start_stops_the_ones_already_started() -> None:
    log: list[str] = []
    app = app_module.create_app(Runtime(environ={}), services=[
        Recorder("journal", log), Recorder("scan", log, fail=True)])
    with pytest.raises(RuntimeError, match="scan cannot start"):
        async with running(app):
            pass
    assert log == ["start journal", "stop journal"]


async def test_observers_see_every_decision_and_cannot_change_the_answer() -> None:
    seen: list[decisions.Decision] = []

    def broken(_decision: decisions.Decision) -> None:
        raise RuntimeError("observer bug")

    runtime = Runtime(environ={})
    runtime.load()
    app = app_module.create_app(runtime, observers=[broken, seen.append])
    body = json.dumps(factories.admission_review(
        factories.pod(factories.pod_spec(factories.container())))).encode()
    async with client(app) as http:
        response = await http.post("/validate", content=body,
                                   headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["response"]["allowed"] is False  # the container has no limits
    assert [d.phase for d in seen] == ["validate"] and not seen[0].allowed

"""Helpers for tests that talk to the real kube-apiserver (tests/e2e/controlplane.py) with
the `kubernetes` client: what a client sent, seen from the client's side."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any
    status: int = 0


@dataclass
class Spy:
    """Records every request an ApiClient makes and the status the API server answered;
    `before(sent)` runs just before a request goes out (e.g. a concurrent writer)."""

    requests: list[Sent] = field(default_factory=list)
    before: Callable[[Sent], None] | None = None

    def wrap(self, client: Any) -> Any:
        call_api = client.call_api

        def recorded(method: str, url: str, header_params: Any = None, body: Any = None,
                     *args: Any, **kwargs: Any) -> Any:
            parsed = urlparse(url)
            content_type = str((header_params or {}).get("Content-Type", ""))
            data = json.loads(body) if isinstance(body, str | bytes) and body else body
            sent = Sent(method, parsed.path, parse_qs(parsed.query), content_type, data)
            if self.before is not None:
                self.before(sent)
            response = call_api(method, url, header_params, body, *args, **kwargs)
            sent.status = response.status
            self.requests.append(sent)
            return response

        client.call_api = recorded
        return client

    def sent(self, method: str, path_part: str = "") -> list[Sent]:
        return [r for r in self.requests if r.method == method and path_part in r.path]

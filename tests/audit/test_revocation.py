"""Access to the audit endpoints is revoked without a restart (issue 12, point 6): a token
removed from `audit.tokenFile` is refused at once, a user removed from `audit.readers` (or a
token file swapped in the config) within one reload interval (1 s). Real server over TLS."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.server import RunningServer, running_server

pytestmark = pytest.mark.integration

RELOAD_INTERVAL = 1.0  # the server's config watch interval
SLACK = 2.0  # a busy 2-core test machine


def status(server: RunningServer, token: str) -> int:
    with server.client() as client:
        return client.get("/audit/decisions", headers={"Authorization": f"Bearer {token}"},
                          ).status_code


def until(server: RunningServer, token: str, expected: int, within: float) -> float:
    """Seconds until `token` gets `expected`; fails past `within`."""
    started = time.monotonic()
    while (got := status(server, token)) != expected:
        assert time.monotonic() - started < within, f"{token}: still {got} after {within} s"
        time.sleep(0.05)
    return time.monotonic() - started


def write_config(path: Path, token_file: Path, users: list[str], groups: list[str]) -> None:
    path.write_text(yaml.safe_dump({"audit": {"tokenFile": str(token_file),
                                              "readers": {"users": users, "groups": groups}}}))


def test_removed_tokens_and_readers_are_refused_without_a_restart(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('rita-token,rita,u1,"mlgate:audit-readers"\nbea-token,bea,u2\n'
                      'ole-token,ole,u3\n')
    cfg = tmp_path / "mlgate.yaml"
    write_config(cfg, tokens, ["bea", "ole"], ["mlgate:audit-readers"])
    with running_server(tmp_path, "--data-dir", str(tmp_path / "data"), config=cfg) as server:
        for token in ("rita-token", "bea-token", "ole-token"):
            assert status(server, token) == 200

        # a token removed from the token file: refused at the next request
        tokens.write_text("bea-token,bea,u2\nole-token,ole,u3\n")
        assert until(server, "rita-token", 401, SLACK) < 0.5
        assert status(server, "bea-token") == 200

        # a reader removed from the config: refused within one reload interval
        write_config(cfg, tokens, ["ole"], ["mlgate:audit-readers"])
        took = until(server, "bea-token", 403, RELOAD_INTERVAL + SLACK)
        print(f"reader removed: refused after {took:.2f} s")
        assert status(server, "ole-token") == 200

        # another token file named in the config: the old file's tokens are refused
        other = tmp_path / "other.csv"
        other.write_text("new-token,nia,u4,\"mlgate:audit-readers\"\n")
        write_config(cfg, other, ["ole"], ["mlgate:audit-readers"])
        until(server, "ole-token", 401, RELOAD_INTERVAL + SLACK)
        assert status(server, "new-token") == 200

        # a broken token file refuses everyone, naming the line, until it is fixed
        other.write_text("new-token,nia,u4,\"mlgate:audit-readers\"\nno-user\n")
        until(server, "new-token", 503, SLACK)
        with server.client() as client:
            answer = client.get("/audit/decisions", headers={"Authorization": "Bearer new-token"})
        assert "line 2" in answer.json()["error"]
        other.write_text("new-token,nia,u4,\"mlgate:audit-readers\"\n")
        until(server, "new-token", 200, SLACK)

        # a token file the config names but nobody can read: refused, naming it
        write_config(cfg, tmp_path / "absent.csv", ["ole"], ["mlgate:audit-readers"])
        until(server, "new-token", 503, RELOAD_INTERVAL + SLACK)
        with server.client() as client:
            answer = client.get("/audit/decisions", headers={"Authorization": "Bearer new-token"})
        assert "absent.csv" in answer.json()["error"]
        assert "Traceback" not in server.output()

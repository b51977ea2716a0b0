"""Token checks: the static token file and TokenReview + SubjectAccessReview."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.audit import apiserver
from webhook import errors
from webhook.audit import access, kube, settings


def check(authority: access.Authority, token: str, path: str = "/audit/report") -> str:
    return asyncio.run(authority.check(token, path)).name


def denied(authority: access.Authority, token: str) -> tuple[int, str]:
    with pytest.raises(access.Denied) as caught:
        check(authority, token)
    return caught.value.status, caught.value.reason


def test_bearer_header_parsing() -> None:
    with pytest.raises(access.Denied, match="needs a bearer token") as caught:
        access.bearer_token(None)
    assert caught.value.status == 401
    with pytest.raises(access.Denied, match="must be 'Bearer <token>'"):
        access.bearer_token("Basic YWxpY2U6cGFzcw==")
    assert access.bearer_token("Bearer abc ") == "abc"


def test_static_token_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('reader-token,rita,u1,"mlgate:audit-readers,dev"\n'
                      "nobody-token,nick,u2\n# a comment\n\nboss-token,bea,u3,ops\n")
    authority = access.StaticTokens(tokens, settings.Readers(users=["bea"]))
    assert check(authority, "reader-token") == "rita"
    assert check(authority, "boss-token") == "bea"
    assert denied(authority, "wrong")[0] == 401
    status, reason = denied(authority, "nobody-token")
    assert status == 403 and "nick" in reason and "audit.readers" in reason


def test_broken_token_files_name_the_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("good,alice,u1\nonly-a-token\n")
    with pytest.raises(errors.ConfigError, match="line 2: expected token,user,uid"):
        access.StaticTokens(tokens, settings.Readers())
    with pytest.raises(errors.ConfigError, match="cannot read"):
        access.StaticTokens(tmp_path / "absent.csv", settings.Readers())


def test_no_way_to_check_tokens_refuses_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    authority = access.authority(settings.AuditSettings())
    status, reason = denied(authority, "anything")
    assert status == 401 and "audit.tokenFile" in reason


def test_token_review_and_subject_access_review(tmp_path: Path) -> None:
    state = apiserver.load_state()
    state.tokens = {"alice-sa-token": {"username": "system:serviceaccount:ops:alice",
                                       "uid": "a1", "groups": ["system:serviceaccounts"]},
                    "bob-token": {"username": "bob", "uid": "b1", "groups": []}}
    state.allowed_users = {"system:serviceaccount:ops:alice"}
    with apiserver.running_apiserver(state, tmp_path) as (_, kubeconfig):
        authority = access.KubernetesAuthority(kube.api_client(str(kubeconfig)))
        assert check(authority, "alice-sa-token") == "system:serviceaccount:ops:alice"
        assert denied(authority, "forged")[0] == 401
        status, reason = denied(authority, "bob-token")
        assert status == 403 and "nonResourceURLs" in reason
        reviews = [path for method, path, _ in state.requests if method == "POST"]
        assert reviews.count("/apis/authentication.k8s.io/v1/tokenreviews") == 3
        assert reviews.count("/apis/authorization.k8s.io/v1/subjectaccessreviews") == 2
        check(authority, "alice-sa-token")  # cached: no new review
        assert len([m for m, _, _ in state.requests if m == "POST"]) == len(reviews)

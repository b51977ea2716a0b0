"""Token checks: the static token file, and TokenReview + SubjectAccessReview answered by a
real kube-apiserver (tests/e2e/test_audit.py does the same through `mlgate serve`)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.audit import apiserver
from tests.e2e.cluster import token
from tests.e2e.controlplane import ControlPlane
from tests.kube import Spy
from webhook import errors
from webhook.audit import access, kube, settings

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


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


@pytest.fixture(scope="module")
def accounts(kube_apiserver: ControlPlane) -> dict[str, str]:
    """Tokens of ServiceAccounts in a real kube-apiserver: `alice` may get /audit/report
    (a ClusterRole with that nonResourceURL), `bob` may get nothing."""
    plane = kube_apiserver
    namespace = plane.namespace("audit-access")
    for account in ("alice", "bob"):
        plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    plane.kubectl("create", "clusterrole", "audit-access-report", "--verb=get",
                  "--non-resource-url=/audit/report")
    plane.kubectl("create", "clusterrolebinding", "audit-access-report",
                  "--clusterrole=audit-access-report", f"--serviceaccount={namespace}:alice")
    return {account: token(plane, account, namespace) for account in ("alice", "bob")}


def reviews(spy: Spy) -> list[str]:
    return [sent.path.rsplit("/", 1)[1] for sent in spy.sent("POST")]


def test_token_review_and_subject_access_review(kube_apiserver: ControlPlane,
                                                accounts: dict[str, str]) -> None:
    spy = Spy()
    client = spy.wrap(kube.api_client(str(kube_apiserver.kubeconfig)))
    authority = access.KubernetesAuthority(client)
    assert check(authority, accounts["alice"]) == "system:serviceaccount:audit-access:alice"
    header, payload, _ = accounts["alice"].split(".")
    assert denied(authority, f"{header}.{payload}.forged")[0] == 401
    status, reason = denied(authority, accounts["bob"])
    assert status == 403 and "system:serviceaccount:audit-access:bob" in reason
    assert 'nonResourceURLs ["/audit/report"]' in reason
    # alice may get /audit/report only: the path is part of the question
    with pytest.raises(access.Denied) as caught:
        check(authority, accounts["alice"], "/audit/decisions")
    assert caught.value.status == 403
    assert reviews(spy).count("tokenreviews") == 4
    assert reviews(spy).count("subjectaccessreviews") == 3
    assert all(sent.status == 201 for sent in spy.requests)
    count = len(spy.requests)
    check(authority, accounts["alice"])  # cached: no new review
    assert denied(authority, accounts["bob"])[0] == 403  # so are refusals
    assert len(spy.requests) == count


def test_a_token_review_that_fails_refuses_and_is_not_cached(
        kube_apiserver: ControlPlane, accounts: dict[str, str], tmp_path: Path) -> None:
    """The API server errors on the TokenReview (a proxy that fails it on purpose): the
    request is refused with 401 and "try again", and the next check asks again."""
    faults = apiserver.Faults(fail={TOKEN_REVIEWS: 500})
    with apiserver.misbehaving(kube_apiserver, tmp_path, faults) as kubeconfig:
        authority = access.KubernetesAuthority(kube.api_client(str(kubeconfig)))
        status, reason = denied(authority, accounts["alice"])
        assert status == 401 and "could not be checked" in reason and "try again" in reason
        assert faults.failed == [TOKEN_REVIEWS]
        faults.fail.clear()
        assert check(authority, accounts["alice"]) == "system:serviceaccount:audit-access:alice"


def test_a_token_review_that_does_not_answer_is_given_up(
        kube_apiserver: ControlPlane, accounts: dict[str, str], tmp_path: Path) -> None:
    """The TokenReview stalls (the proxy holds it on purpose): the check gives up after
    its timeout with 401 "try again" instead of holding the reader's request."""
    faults = apiserver.Faults(stall={TOKEN_REVIEWS: 5})
    with apiserver.misbehaving(kube_apiserver, tmp_path, faults) as kubeconfig:
        authority = access.KubernetesAuthority(kube.api_client(str(kubeconfig)), timeout=1)
        started = time.monotonic()
        status, reason = denied(authority, accounts["alice"])
        assert time.monotonic() - started < 3
        assert status == 401 and "try again" in reason


def test_token_reviews_never_take_the_threads_admission_uses(
        kube_apiserver: ControlPlane, tmp_path: Path) -> None:
    """Readers with new tokens while the TokenReviews hang (the proxy holds them on
    purpose) wait on threads of their own: the loop's default threads, which admission
    work uses (the signature verifier), stay free."""
    faults = apiserver.Faults(stall={TOKEN_REVIEWS: 5})
    with apiserver.misbehaving(kube_apiserver, tmp_path, faults) as kubeconfig:
        authority = access.KubernetesAuthority(kube.api_client(str(kubeconfig)), timeout=4)

        async def scenario() -> str:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(2, thread_name_prefix="default"))
            readers = [asyncio.ensure_future(authority.check(f"new-token-{i}", "/audit/report"))
                       for i in range(8)]
            await asyncio.sleep(0.5)  # every reader is waiting for its review now
            try:  # bounded: it waited behind the hanging reviews before
                return await asyncio.wait_for(loop.run_in_executor(
                    None, lambda: threading.current_thread().name), 2)
            finally:
                refused = await asyncio.gather(*readers, return_exceptions=True)
                assert all(isinstance(r, access.Denied) and r.status == 401 for r in refused)

        assert asyncio.run(scenario()).startswith("default")

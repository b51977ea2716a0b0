"""Who may read the audit endpoints: a bearer token, checked one of two ways.

- In a cluster: a `TokenReview` says who the token belongs to, then a
  `SubjectAccessReview` asks whether that user may `get` the endpoint's path as a
  non-resource URL (grant it with a ClusterRole rule `nonResourceURLs: ["/audit/*"]`).
  Answers are cached for a short while, keyed by a hash of the token.
- Locally: a Kubernetes static token file (CSV `token,user,uid,"group1,group2"`); its
  users may read when they are listed in `audit.readers` (by name or group).

No token: 401. A token nobody knows: 401. A known user without permission: 403.

Revocation needs no restart: the token file is read again as soon as it changes (checked
at every request: a removed token is refused at once; a file that no longer parses refuses
everyone with a 503 naming the line), and `Audit` builds a new authority when a config
reload changes `audit.tokenFile`, `audit.readers` or how tokens are checked.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook import errors
from webhook.audit import settings as audit_settings

log = logging.getLogger("mlgate.access")

CACHE_SECONDS = 30.0
REVIEW_THREADS = 4  # TokenReviews at once; more readers with new tokens wait their turn
REVIEW_TIMEOUT = 10.0  # seconds a TokenReview or SubjectAccessReview may take
REALM = 'Bearer realm="mlgate"'


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


class Denied(errors.MlgateError):
    """The request may not read the endpoint (401: who are you? 403: not allowed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Denied(401, "this endpoint needs a bearer token: send 'Authorization: Bearer "
                          "<token>' (mlgate audit report --token ...)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Denied(401, "the Authorization header must be 'Bearer <token>'")
    return token.strip()


class Authority:
    """Decides whether a token may `get` a path."""

    async def check(self, token: str, path: str) -> User:
        raise NotImplementedError


class NoAuthority(Authority):
    """Nothing is configured to check tokens: every request is refused, with the fix."""

    async def check(self, token: str, path: str) -> User:
        raise Denied(401, "no way to check tokens is configured: set audit.tokenFile to a "
                          "static token CSV, or run mlgate in a cluster (TokenReview)")


class StaticTokens(Authority):
    """A Kubernetes static token file, and `audit.readers` as the permission."""

    def __init__(self, path: str | Path, readers: audit_settings.Readers) -> None:
        self.path = Path(path)
        self.readers = readers
        self._stamp = _stamp(self.path)
        self.tokens = parse_token_file(self.path)
        self._broken = ""  # why the file as it is now cannot be used

    def _refresh(self) -> None:
        """Read the file again if it changed since the last read (a stat per request)."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.tokens = parse_token_file(self.path)
        except errors.ConfigError as exc:
            self.tokens, self._broken = [], str(exc)
            log.error("%s; every audit request is refused until it is fixed", exc)
            return
        if self._broken:
            log.info("audit.tokenFile %s reads again", self.path)
        self._broken = ""
        log.info("audit.tokenFile %s re-read: %d tokens", self.path, len(self.tokens))

    async def check(self, token: str, path: str) -> User:
        self._refresh()
        if self._broken:
            raise Denied(503, f"{self._broken}; fix the file (no restart needed)")
        user = None
        for known, candidate in self.tokens:
            if hmac.compare_digest(known.encode(), token.encode()):
                user = candidate
        if user is None:
            raise Denied(401, "the bearer token is not valid")
        if user.name in self.readers.users or set(user.groups) & set(self.readers.groups):
            return user
        raise Denied(403, f"user {user.name!r} may not get {path}: add the user or one of its "
                          f"groups to audit.readers")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_ino, found.st_size


class Refusing(Authority):
    """The configured way of checking tokens cannot be built: refuse, saying why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def check(self, token: str, path: str) -> User:
        raise Denied(503, f"{self.reason}; fix the configuration (no restart needed)")


def parse_token_file(path: Path) -> list[tuple[str, User]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"audit.tokenFile {path}: cannot read: {exc.strerror}") from exc
    tokens = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        if len(row) < 3 or not row[0].strip() or not row[1].strip():
            raise errors.ConfigError(f"audit.tokenFile {path} line {number}: expected "
                                     f"token,user,uid[,\"group1,group2\"]")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens.append((row[0].strip(), User(row[1].strip(), row[2].strip(), groups)))
    return tokens


class KubernetesAuthority(Authority):
    """TokenReview, then SubjectAccessReview on the path (verb get), via the API server."""

    def __init__(self, api_client: Any, timeout: float = REVIEW_TIMEOUT) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self._cache: dict[str, tuple[float, User | Denied]] = {}
        # Threads of their own: many readers with new tokens and a slow API server must
        # not take the loop's default threads, which admission work (signatures) uses.
        self._threads = ThreadPoolExecutor(REVIEW_THREADS, thread_name_prefix="mlgate-token-review")

    async def check(self, token: str, path: str) -> User:
        key = hashlib.sha256(f"{path}\0{token}".encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            outcome = cached[1]
        else:
            try:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    self._threads, self._review, token, path)
            except Exception as exc:  # the API server is unreachable: refuse, do not cache
                log.error("token review failed: %s", exc)
                raise Denied(401, "the token could not be checked (the Kubernetes API did "
                                  "not answer); try again") from exc
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + CACHE_SECONDS, outcome)
        if isinstance(outcome, Denied):
            raise outcome
        return outcome

    def _review(self, token: str, path: str) -> User | Denied:
        from kubernetes import client

        review = client.AuthenticationV1Api(self.api_client).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)),
            _request_timeout=self.timeout)
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return Denied(401, "the bearer token is not valid (TokenReview: "
                               f"{getattr(status, 'error', None) or 'not authenticated'})")
        user = User(status.user.username or "", status.user.uid or "",
                    tuple(status.user.groups or ()))
        access = client.AuthorizationV1Api(self.api_client).create_subject_access_review(
            client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
                user=user.name, uid=user.uid or None, groups=list(user.groups) or None,
                non_resource_attributes=client.V1NonResourceAttributes(path=path, verb="get"))),
            _request_timeout=self.timeout)
        if access.status is not None and access.status.allowed:
            return user
        reason = (access.status.reason if access.status is not None else "") or "no RBAC rule"
        return Denied(403, f"user {user.name!r} may not get {path} ({reason}): grant a "
                           f"ClusterRole with nonResourceURLs [\"{path}\"] verbs [get]")


def settings_key(cfg: audit_settings.AuditSettings) -> tuple[object, ...]:
    """What `authority()` reads: a reload that changes none of it keeps the authority."""
    return (cfg.tokenFile, cfg.readers, cfg.kubernetesAuth, cfg.scan.kubeconfig)


def authority(cfg: audit_settings.AuditSettings) -> Authority:
    """The configured way of checking tokens (`ConfigError` when the token file is bad)."""
    if cfg.tokenFile:
        return StaticTokens(cfg.tokenFile, cfg.readers)
    from webhook.audit import kube

    use_kubernetes = cfg.kubernetesAuth if cfg.kubernetesAuth is not None else kube.in_cluster()
    if use_kubernetes:
        return KubernetesAuthority(kube.api_client(cfg.scan.kubeconfig))
    return NoAuthority()

"""An async client of the OCI distribution API: manifests, blobs and referrers.

Auth follows the registry's challenge: `WWW-Authenticate: Bearer realm=...,service=...,
scope=...` gets a token from the realm (anonymously, or with the registry's basic
credentials from the dockerconfigjson), `Basic` gets the credentials directly. A digest
is always sha256 of the bytes received, never the `Docker-Content-Digest` header alone.
Referrers come from `GET /v2/<name>/referrers/<digest>`, or from the fallback tag
`sha256-<hex>` where the registry does not serve that API (distribution 2.8 does not).
Every call takes the request's deadline (a `time.monotonic()` instant) and gives up there.

Errors (all `RegistryError`, each message names the registry and what to do):

    RegistryError
    ├── Unreachable       connection refused, DNS, TLS handshake
    ├── DeadlineExceeded  no answer before the request's deadline
    ├── AuthFailed        401/403 after authenticating, or credentials needed but absent
    └── BadResponse       an answer that is not what the API promises (digest mismatch, ...)
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import re
import ssl
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpx

from webhook import images
from webhook.signatures import metrics, settings

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFEST_TYPES)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the OCI distribution spec's recommended limit
MAX_BLOB_BYTES = 4 * 1024 * 1024  # signature payloads and bundles are a few KiB
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """A registry could not answer what was asked."""


class Unreachable(RegistryError):
    """The registry did not accept a connection (refused, DNS, TLS)."""


class DeadlineExceeded(RegistryError):
    """The registry did not answer before the request's deadline."""


class AuthFailed(RegistryError):
    """The registry refused the credentials, or wants credentials that are not configured."""


class BadResponse(RegistryError):
    """The registry answered something the distribution API does not allow."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(data: bytes, digest: str) -> bool:
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ("sha256", "sha512"):
        return False
    return hashlib.new(algorithm, data).hexdigest() == expected


@dataclass
class Manifest:
    """A manifest or index as received: exact bytes, their digest and media type."""

    digest: str
    media_type: str
    body: bytes
    data: dict[str, Any] = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.data

    def descriptors(self) -> list[dict[str, Any]]:
        """The `manifests` of an index, or the `layers` of a manifest (dicts only)."""
        items = self.data.get("manifests" if self.is_index else "layers")
        return [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []


@dataclass
class _Token:
    value: str
    expires: float


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"registries.caBundle: cannot load {ca_bundle}: {exc}") from exc
    return context


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {realm, service, ...})."""
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


class Client:
    """Talks to every registry; one HTTP connection pool per event loop."""

    def __init__(self, config: settings.Registries,
                 credentials: dict[str, tuple[str, str]] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.credentials = credentials or {}
        self._ssl = _ssl_context(config.caBundle)
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._tokens: dict[tuple[str, str], _Token] = {}

    # -- plumbing --------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(
                verify=self._ssl, follow_redirects=True, transport=self._transport,
                headers={"User-Agent": "mlgate"},
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the pool of the running loop (tests, shutdown hooks)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close the pools of loops that still run (a replaced config's client)."""
        for loop, client in list(self._clients.items()):
            if not loop.is_closed() and loop.is_running():
                loop.call_soon_threadsafe(functools.partial(loop.create_task, client.aclose()))
        self._clients = weakref.WeakKeyDictionary()

    def _base(self, ref: images.Reference) -> str:
        scheme = "http" if self.config.is_insecure(ref.registry) else "https"
        return f"{scheme}://{ref.api_host}/v2/{ref.repository}"

    @staticmethod
    def _remaining(deadline: float, registry: str) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(f"registry {registry} did not answer before the deadline")
        return remaining

    async def _send(self, method: str, url: str, ref: images.Reference, deadline: float,
                    operation: str, headers: dict[str, str] | None = None,
                    auth: str | None = None) -> httpx.Response:
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = auth
        remaining = self._remaining(deadline, ref.registry)
        started = time.monotonic()
        outcome = "error"
        try:
            response = await asyncio.wait_for(
                self._http().request(method, url, headers=headers, timeout=remaining), remaining)
            outcome = str(response.status_code)
            return response
        except (TimeoutError, httpx.TimeoutException) as exc:
            outcome = "timeout"
            raise DeadlineExceeded(f"registry {ref.registry} did not answer {operation} within "
                                   f"the deadline") from exc
        except httpx.TransportError as exc:
            raise Unreachable(f"registry {ref.registry} is unreachable ({operation}): "
                              f"{type(exc).__name__}: {exc or 'connection failed'}") from exc
        finally:
            metrics.REGISTRY_LATENCY.labels(operation, outcome).observe(
                time.monotonic() - started)

    async def _token(self, ref: images.Reference, challenge: dict[str, str],
                     deadline: float) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise BadResponse(f"registry {ref.registry} asked for a Bearer token without a realm")
        scope = challenge.get("scope") or f"repository:{ref.repository}:pull"
        params = {"scope": scope}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        basic = self._basic(ref.registry)
        url = str(httpx.URL(realm, params=params))
        response = await self._send("GET", url, ref, deadline, "token", auth=basic)
        if response.status_code in (401, 403):
            raise AuthFailed(f"the token service of {ref.registry} refused "
                             f"{'the configured credentials' if basic else 'anonymous access'} "
                             f"for {ref.repository}"
                             + ("" if basic else "; add credentials to registries.credentials"))
        if response.status_code != 200:
            raise BadResponse(f"the token service of {ref.registry} answered "
                              f"HTTP {response.status_code}")
        try:
            body = response.json()
            token = str(body.get("token") or body.get("access_token"))
            expires_in = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError) as exc:
            raise BadResponse(f"the token service of {ref.registry} answered no JSON token"
                              ) from exc
        if not token or token == "None":
            raise BadResponse(f"the token service of {ref.registry} answered no token")
        self._tokens[(ref.registry, ref.repository)] = _Token(
            token, time.monotonic() + max(expires_in - 5, 1))
        return f"Bearer {token}"

    def _basic(self, registry: str) -> str | None:
        creds = self.credentials.get(registry)
        if creds is None:
            return None
        return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()

    async def _get(self, ref: images.Reference, url: str, deadline: float, operation: str,
                   headers: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
        """A request with the registry's auth dance: cached token, challenge, one retry."""
        cached = self._tokens.get((ref.registry, ref.repository))
        auth = None
        if cached is not None and cached.expires > time.monotonic():
            auth = f"Bearer {cached.value}"
        response = await self._send(method, url, ref, deadline, operation, headers, auth)
        if response.status_code != 401:
            return response
        scheme, challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer":
            auth = await self._token(ref, challenge, deadline)
        elif scheme == "basic":
            auth = self._basic(ref.registry)
            if auth is None:
                raise AuthFailed(f"registry {ref.registry} requires credentials; add them to "
                                 f"the dockerconfigjson file of registries.credentials")
        else:
            raise AuthFailed(f"registry {ref.registry} answered 401 with an unknown challenge "
                             f"{scheme or '(none)'!r}")
        response = await self._send(method, url, ref, deadline, operation, headers, auth)
        if response.status_code == 401:
            raise AuthFailed(f"registry {ref.registry} refused the credentials for "
                             f"{ref.repository}; check registries.credentials")
        return response

    # -- the API ---------------------------------------------------------------
    async def manifest(self, ref: images.Reference, reference: str | None = None,
                       deadline: float | None = None) -> Manifest | None:
        """The manifest at a tag or digest (default: the ref's own); None when absent."""
        deadline = deadline if deadline is not None else time.monotonic() + 10
        reference = reference or ref.reference
        url = f"{self._base(ref)}/manifests/{reference}"
        response = await self._get(ref, url, deadline, "manifest", {"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        _raise_for_status(response, ref, f"manifest {reference}")
        body = response.content
        if len(body) > MAX_MANIFEST_BYTES:
            raise BadResponse(f"registry {ref.registry}: manifest {reference} is over 4 MiB")
        digest = sha256_digest(body)
        if images.DIGEST.match(reference) and not check_digest(body, reference):
            raise BadResponse(f"registry {ref.registry} returned content for {reference} whose "
                              f"digest is {digest}")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise BadResponse(f"registry {ref.registry}: manifest {reference} is not JSON"
                              ) from exc
        if not isinstance(data, dict):
            raise BadResponse(f"registry {ref.registry}: manifest {reference} is not an object")
        media_type = str(data.get("mediaType") or
                         response.headers.get("Content-Type", "").split(";")[0].strip())
        return Manifest(digest, media_type, body, data)

    async def head(self, ref: images.Reference, deadline: float) -> str | None:
        """The digest the registry claims for the ref (a hint; GET to know)."""
        url = f"{self._base(ref)}/manifests/{ref.reference}"
        response = await self._get(ref, url, deadline, "head", {"Accept": ACCEPT}, "HEAD")
        if response.status_code == 404:
            return None
        _raise_for_status(response, ref, f"manifest {ref.reference}")
        digest = response.headers.get("Docker-Content-Digest")
        return str(digest) if digest else None

    async def blob(self, ref: images.Reference, digest: str, deadline: float) -> bytes:
        url = f"{self._base(ref)}/blobs/{digest}"
        response = await self._get(ref, url, deadline, "blob")
        _raise_for_status(response, ref, f"blob {digest}")
        body = response.content
        if len(body) > MAX_BLOB_BYTES:
            raise BadResponse(f"registry {ref.registry}: blob {digest} is over 4 MiB")
        if not check_digest(body, digest):
            raise BadResponse(f"registry {ref.registry} returned blob content that does not "
                              f"match {digest}")
        return body

    async def referrers(self, ref: images.Reference, digest: str, artifact_type: str,
                        deadline: float) -> list[dict[str, Any]]:
        """Descriptors of manifests whose subject is `digest`, of one artifactType."""
        url = f"{self._base(ref)}/referrers/{digest}"
        response = await self._get(ref, str(httpx.URL(url, params={"artifactType": artifact_type})),
                                   deadline, "referrers", {"Accept": OCI_INDEX})
        data: Any = None
        if response.status_code == 200 and "json" in response.headers.get("Content-Type", ""):
            try:
                data = response.json()
            except ValueError:
                data = None
        if isinstance(data, dict) and isinstance(data.get("manifests"), list):
            items = data["manifests"]
        else:  # no referrers API: the tag schema
            index = await self.manifest(ref, signature_tag(digest), deadline)
            items = index.descriptors() if index is not None and index.is_index else []
        return [d for d in items if isinstance(d, dict) and d.get("artifactType") == artifact_type]


def signature_tag(digest: str, suffix: str = "") -> str:
    """`sha256:abc` -> `sha256-abc` (+ `.sig`): where cosign stores what refers to a digest."""
    algorithm, _, hex_digits = digest.partition(":")
    return f"{algorithm}-{hex_digits}{suffix}"


def _raise_for_status(response: httpx.Response, ref: images.Reference, what: str) -> None:
    if response.status_code == 200:
        return
    if response.status_code == 403:
        raise AuthFailed(f"registry {ref.registry} denied access to {what} of {ref.repository}")
    if response.status_code == 404:
        raise BadResponse(f"registry {ref.registry} has no {what} in {ref.repository}")
    raise BadResponse(f"registry {ref.registry} answered HTTP {response.status_code} for {what} "
                      f"of {ref.repository}")

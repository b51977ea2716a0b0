"""An independent minimal signer that writes what cosign writes, and an image pusher.

It speaks the distribution API directly (sync httpx) and follows the cosign formats:
legacy simple-signing payloads in an OCI manifest at `sha256-<hex>.sig` (signature in
the layer annotation `dev.cosignproject.cosign/signature`), and sigstore v0.3 bundles
(DSSE in-toto statement, predicateType cosign/sign/v1) pushed as OCI referrers with the
fallback tag `sha256-<hex>` pointing at an index of them. It shares no code with the
verifier in webhook/signatures, on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tag_for(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-") + suffix


@dataclass
class Pusher:
    """Pushes blobs and manifests to one registry over the distribution API."""

    base: str  # http://127.0.0.1:port
    host: str  # 127.0.0.1:port, as in image references
    token: Any = None  # callable(repository) -> bearer token, for auth registries
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def _headers(self, repository: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(repository)}"} if self.token else {}

    def blob(self, repository: str, data: bytes) -> dict[str, Any]:
        digest = digest_of(data)
        headers = self._headers(repository)
        start = self.client.post(f"{self.base}/v2/{repository}/blobs/uploads/", headers=headers)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        done = self.client.put(f"{location}{sep}digest={digest}", content=data,
                               headers={**headers, "Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
        return {"digest": digest, "size": len(data)}

    def manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.client.put(f"{self.base}/v2/{repository}/manifests/{reference}",
                                   content=body, headers={**self._headers(repository),
                                                          "Content-Type": media_type})
        assert response.status_code == 201, response.text
        return digest_of(body)

    def get_manifest(self, repository: str, reference: str) -> dict[str, Any] | None:
        response = self.client.get(
            f"{self.base}/v2/{repository}/manifests/{reference}",
            headers={**self._headers(repository), "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
        return response.json() if response.status_code == 200 else None

    def image(self, repository: str, tag: str, content: bytes | None = None) -> str:
        """A small single-platform image; its manifest digest."""
        layer = self.blob(repository, content or os.urandom(64))
        config = self.blob(repository, json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
             "diff_ids": [layer["digest"]]}}).encode())
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, **config},
                           "layers": [{"mediaType": OCI_LAYER, **layer}]}).encode()
        return self.manifest(repository, tag, body, OCI_MANIFEST)

    def index(self, repository: str, tag: str, children: list[tuple[str, str]]) -> str:
        """A multi-arch index over (digest, architecture) children of this repository."""
        manifests = []
        for digest, arch in children:
            size = len(self.client.get(f"{self.base}/v2/{repository}/manifests/{digest}",
                                       headers={**self._headers(repository),
                                                "Accept": OCI_MANIFEST}).content)
            manifests.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                              "platform": {"architecture": arch, "os": "linux"}})
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": manifests}).encode()
        return self.manifest(repository, tag, body, OCI_INDEX)


class Signer:
    """An ECDSA P-256 signer writing cosign-format signatures."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    @staticmethod
    def payload(identity: str, digest: str, optional: dict[str, str] | None = None) -> bytes:
        return json.dumps({
            "critical": {"identity": {"docker-reference": identity},
                         "image": {"docker-manifest-digest": digest},
                         "type": "cosign container image signature"},
            "optional": optional}, separators=(",", ":"), sort_keys=True).encode()

    def legacy(self, pusher: Pusher, repository: str, digest: str, *,
               payload_digest: str | None = None, optional: dict[str, str] | None = None,
               tamper: bool = False, identity: str | None = None) -> None:
        """Append a simple-signing layer to the `sha256-<hex>.sig` manifest of `digest`."""
        payload = self.payload(identity or f"{pusher.host}/{repository}",
                               payload_digest or digest, optional)
        signature = base64.b64encode(self.sign(payload)).decode()
        if tamper:  # what is stored differs from what was signed
            payload = payload.replace(b"cosign container image signature",
                                      b"cosign container image signaturE")
        layer = {"mediaType": SIMPLESIGNING, **pusher.blob(repository, payload),
                 "annotations": {"dev.cosignproject.cosign/signature": signature}}
        tag = tag_for(digest, ".sig")
        existing = pusher.get_manifest(repository, tag)
        layers = (existing or {}).get("layers", []) + [layer]
        config = pusher.blob(repository, json.dumps(
            {"architecture": "", "os": "", "rootfs": {"type": "layers",
             "diff_ids": [d["digest"] for d in layers]}}).encode())
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, **config},
                           "layers": layers}).encode()
        pusher.manifest(repository, tag, body, OCI_MANIFEST)

    def bundle_bytes(self, repository: str, digest: str,
                     predicate_type: str = SIGN_PREDICATE) -> bytes:
        statement = json.dumps({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": repository, "digest": {"sha256": digest.split(":")[1]}}],
            "predicateType": predicate_type, "predicate": {}}).encode()
        payload_type = "application/vnd.in-toto+json"
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(),
                                        len(statement), statement)
        public_der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return json.dumps({
            "mediaType": BUNDLE,
            "verificationMaterial": {
                "publicKey": {"hint": base64.b64encode(
                    hashlib.sha256(public_der).digest()).decode()},
                "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.b64encode(statement).decode(), "payloadType": payload_type,
                "signatures": [{"sig": base64.b64encode(self.sign(pae)).decode(),
                                "keyid": ""}]}}).encode()

    def bundle(self, pusher: Pusher, repository: str, digest: str,
               predicate_type: str = SIGN_PREDICATE, bundle: bytes | None = None) -> str:
        """Push a bundle referrer of `digest` and list it in the fallback tag's index."""
        data = bundle or self.bundle_bytes(repository, digest, predicate_type)
        layer = {"mediaType": BUNDLE, **pusher.blob(repository, data)}
        empty = pusher.blob(repository, b"{}")
        subject = pusher.client.get(f"{pusher.base}/v2/{repository}/manifests/{digest}",
                                    headers={**pusher._headers(repository),
                                             "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
            "config": {"mediaType": OCI_EMPTY, **empty}, "layers": [layer],
            "subject": {"mediaType": subject.headers["Content-Type"], "digest": digest,
                        "size": len(subject.content)}}).encode()
        referrer = pusher.manifest(repository, digest_of(body), body, OCI_MANIFEST)
        fallback = tag_for(digest)
        index = pusher.get_manifest(repository, fallback) or {
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": referrer,
                                   "size": len(body), "artifactType": BUNDLE})
        pusher.manifest(repository, fallback, json.dumps(index).encode(), OCI_INDEX)
        return referrer

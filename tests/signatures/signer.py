"""An independent minimal signer that writes what cosign writes, and an image pusher.

It speaks the distribution API directly (sync httpx) and follows the cosign formats:
legacy simple-signing payloads in an OCI manifest at `sha256-<hex>.sig` (signature in
the layer annotation `dev.cosignproject.cosign/signature`), legacy attestations (DSSE
envelopes of in-toto statements) at `sha256-<hex>.att`, and sigstore v0.3 bundles (DSSE
in-toto statement: predicateType cosign/sign/v1 for a signature, any other for an
attestation) pushed as OCI referrers with the fallback tag `sha256-<hex>` pointing at an
index of them. It shares no code with the
verifier in webhook/signatures, on purpose.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
MODEL_ARTIFACT = "application/vnd.cnai.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cnai.model.config.v1+json"
MODEL_WEIGHTS = "application/vnd.cnai.model.weight.v1.raw"
INTOTO = "application/vnd.in-toto+json"


def statement(repository: str, digest: str, predicate_type: str, predicate: Any) -> bytes:
    """An in-toto Statement v1 about `digest`."""
    algorithm, _, hex_digest = digest.partition(":")
    return json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "subject": [{"name": repository, "digest": {algorithm: hex_digest}}],
                       "predicateType": predicate_type, "predicate": predicate}).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload),
                                     payload)


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

    def model(self, repository: str, tag: str, weights: bytes | None = None) -> str:
        """A model as an OCI artifact (CNCF ModelPack media types, as model packaging tools
        push them): an artifactType, a model config and a weights layer; its digest."""
        layer = self.blob(repository, weights or os.urandom(256))
        config = self.blob(repository, json.dumps(
            {"descriptor": {"name": repository}, "config": {"format": "safetensors"},
             "modelfs": {"type": "layers", "diffIds": [layer["digest"]]}}).encode())
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "artifactType": MODEL_ARTIFACT,
                           "config": {"mediaType": MODEL_CONFIG, **config},
                           "layers": [{"mediaType": MODEL_WEIGHTS, **layer,
                                       "annotations": {"org.cnai.model.filepath":
                                                       "model.safetensors"}}]}).encode()
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


def append_sig_layer(pusher: Pusher, repository: str, digest: str, payload: bytes,
                     annotations: dict[str, str], suffix: str = ".sig",
                     media_type: str = SIMPLESIGNING) -> None:
    """Append one layer to the `sha256-<hex>.sig` manifest of `digest` (simple-signing),
    or to `sha256-<hex>.att` (DSSE envelopes: legacy attestations)."""
    layer = {"mediaType": media_type, **pusher.blob(repository, payload),
             "annotations": annotations}
    tag = tag_for(digest, suffix)
    existing = pusher.get_manifest(repository, tag)
    layers = (existing or {}).get("layers", []) + [layer]
    config = pusher.blob(repository, json.dumps(
        {"architecture": "", "os": "", "rootfs": {"type": "layers",
         "diff_ids": [d["digest"] for d in layers]}}).encode())
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, **config},
                       "layers": layers}).encode()
    pusher.manifest(repository, tag, body, OCI_MANIFEST)


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
        append_sig_layer(pusher, repository, digest, payload,
                         {"dev.cosignproject.cosign/signature": signature})

    def envelope(self, payload: bytes, tamper: bool = False) -> bytes:
        """A DSSE envelope (what `cosign attest` stores in a `.att` layer) of an in-toto
        payload; `tamper` stores a payload other than the signed one."""
        signature = self.sign(pae(INTOTO, payload))
        stored = payload.replace(b'"predicate"', b'"predicate" ') if tamper else payload
        return json.dumps({"payloadType": INTOTO,
                           "payload": base64.b64encode(stored).decode(),
                           "signatures": [{"keyid": "",
                                           "sig": base64.b64encode(signature).decode()}]}
                          ).encode()

    def attest_legacy(self, pusher: Pusher, repository: str, digest: str,
                      predicate_type: str, predicate: Any, *, subject: str | None = None,
                      tamper: bool = False) -> None:
        """`cosign attest --key` without bundles: an envelope layer at `sha256-<hex>.att`."""
        payload = statement(repository, subject or digest, predicate_type, predicate)
        append_sig_layer(pusher, repository, digest, self.envelope(payload, tamper),
                         {"dev.cosignproject.cosign/signature": "",
                          "predicateType": predicate_type}, ".att", DSSE_ENVELOPE)

    def bundle_bytes(self, repository: str, digest: str,
                     predicate_type: str = SIGN_PREDICATE, predicate: Any = None) -> bytes:
        payload = statement(repository, digest, predicate_type,
                            {} if predicate is None else predicate)
        payload_type = INTOTO
        signed = pae(payload_type, payload)
        public_der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return json.dumps({
            "mediaType": BUNDLE,
            "verificationMaterial": {
                "publicKey": {"hint": base64.b64encode(
                    hashlib.sha256(public_der).digest()).decode()},
                "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(), "payloadType": payload_type,
                "signatures": [{"sig": base64.b64encode(self.sign(signed)).decode(),
                                "keyid": ""}]}}).encode()

    def bundle(self, pusher: Pusher, repository: str, digest: str,
               predicate_type: str = SIGN_PREDICATE, bundle: bytes | None = None,
               predicate: Any = None) -> str:
        """Push a bundle referrer of `digest` and list it in the fallback tag's index (a
        signature with the signing predicate, an attestation with any other)."""
        data = bundle or self.bundle_bytes(repository, digest, predicate_type, predicate)
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


def _ca_cert(subject: str, key: Any, issuer: Any, issuer_key: Any, start: datetime.datetime,
             end: datetime.datetime) -> x509.Certificate:
    """A CA certificate: self-signed root when `issuer` is None, else an intermediate."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlgate-test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None
                                                    else 0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), critical=True))
    return builder.sign(issuer_key, hashes.SHA384())


class TestSigstore:
    """A Fulcio and a Rekor of our own: a root CA and an intermediate that issue short-lived
    code-signing leaves with an email SAN and the OIDC-issuer extensions, and a log key that
    signs SETs over hashedrekord entries, and a CT log whose SCTs the leaves embed. It writes
    cosign's legacy keyless `.sig` and `.att` layers and the trusted_root.json that trusts
    them; like `Signer`, it shares no verifier code."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = _ca_cert("test-fulcio-root", self.root_key, None, self.root_key,
                             now - datetime.timedelta(days=30), now + datetime.timedelta(days=30))
        self.intermediate_key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate = _ca_cert("test-fulcio-intermediate", self.intermediate_key,
                                     self.root, self.root_key, now - datetime.timedelta(days=30),
                                     now + datetime.timedelta(days=30))
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_der = self.ct_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_der = self.rekor_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.log_index = 0

    def trusted_root(self) -> dict[str, Any]:
        """A sigstore trusted_root.json (protobuf-specs TrustedRoot) trusting this CA and log."""
        def der(cert: x509.Certificate) -> str:
            return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

        start = {"start": "2020-01-01T00:00:00Z"}
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": "https://rekor.test", "hashAlgorithm": "SHA2_256",
                       "publicKey": {"rawBytes": base64.b64encode(self.rekor_der).decode(),
                                     "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": start},
                       "logId": {"keyId": base64.b64encode(
                           hashlib.sha256(self.rekor_der).digest()).decode()}}],
            "certificateAuthorities": [{
                "subject": {"organization": "mlgate-test", "commonName": "test-fulcio-root"},
                "uri": "https://fulcio.test",
                "certChain": {"certificates": [{"rawBytes": der(self.intermediate)},
                                               {"rawBytes": der(self.root)}]},
                "validFor": start}],
            "ctlogs": [{"baseUrl": "https://ct.test", "hashAlgorithm": "SHA2_256",
                        "publicKey": {"rawBytes": base64.b64encode(self.ct_der).decode(),
                                      "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                      "validFor": start},
                        "logId": {"keyId": base64.b64encode(
                            hashlib.sha256(self.ct_der).digest()).decode()}}],
            "timestampAuthorities": []}

    def leaf(self, key: Any, email: str, issuer: str, start: datetime.datetime,
             lifetime: datetime.timedelta = datetime.timedelta(minutes=10),
             usage: Any = ExtendedKeyUsageOID.CODE_SIGNING, sct: str = "valid",
             ) -> x509.Certificate:
        """A Fulcio-like leaf. `sct`: "valid" (an SCT of this CT log), "none", "untrusted"
        (an SCT of a CT log the trusted root does not name) or "tampered" (the SCT's
        signature does not match the certificate)."""
        builder = self._leaf_builder(key, email, issuer, start, lifetime, usage)
        precert = builder.sign(self.intermediate_key, hashes.SHA384())
        if sct == "none":
            return precert
        ct_key = self.ct_key if sct != "untrusted" else ec.generate_private_key(ec.SECP256R1())
        return builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"),
            _sct_list(ct_key, precert.tbs_certificate_bytes, self.intermediate,
                      tamper=sct == "tampered")),
            critical=False).sign(self.intermediate_key, hashes.SHA384())

    def _leaf_builder(self, key: Any, email: str, issuer: str, start: datetime.datetime,
                      lifetime: datetime.timedelta, usage: Any) -> x509.CertificateBuilder:
        issuer_utf8 = issuer.encode()
        assert len(issuer_utf8) < 128
        return (x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(self.intermediate.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + lifetime)
                .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]),
                               critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.UnrecognizedExtension(  # OIDC issuer (v1: raw bytes)
                    x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer_utf8), critical=False)
                .add_extension(x509.UnrecognizedExtension(  # OIDC issuer (v2: DER UTF8String)
                    x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"),
                    bytes([0x0C, len(issuer_utf8)]) + issuer_utf8), critical=False))

    def rekor_bundle(self, payload: bytes, signature: bytes, cert_pem: bytes,
                     integrated_time: int) -> str:
        """cosign's `bundle` annotation: a hashedrekord entry and the log's SET over it."""
        body = base64.b64encode(json.dumps({
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {"data": {"hash": {"algorithm": "sha256",
                                       "value": hashlib.sha256(payload).hexdigest()}},
                     "signature": {"content": base64.b64encode(signature).decode(),
                                   "publicKey": {"content": base64.b64encode(
                                       cert_pem).decode()}}}},
            separators=(",", ":")).encode()).decode()
        self.log_index += 1
        entry = {"body": body, "integratedTime": integrated_time,
                 "logID": hashlib.sha256(self.rekor_der).hexdigest(), "logIndex": self.log_index}
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        signed = self.rekor_key.sign(canonical, ec.ECDSA(hashes.SHA256()))
        return json.dumps({"SignedEntryTimestamp": base64.b64encode(signed).decode(),
                           "Payload": entry})

    def attest_legacy(self, pusher: Pusher, repository: str, digest: str, email: str,
                      issuer: str, predicate_type: str, predicate: Any) -> None:
        """`cosign attest` keyless without bundles: an envelope layer at `.att` with the
        certificate, chain and a Rekor `intoto` 0.0.1 entry (hashes and key) with its SET."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - \
            datetime.timedelta(hours=1)
        cert_pem = self.leaf(key, email, issuer, start).public_bytes(serialization.Encoding.PEM)
        payload = statement(repository, digest, predicate_type, predicate)
        signature = key.sign(pae(INTOTO, payload), ec.ECDSA(hashes.SHA256()))
        envelope = json.dumps({"payloadType": INTOTO,
                               "payload": base64.b64encode(payload).decode(),
                               "signatures": [{"keyid": "", "sig": base64.b64encode(
                                   signature).decode()}]}).encode()
        body = {"apiVersion": "0.0.1", "kind": "intoto", "spec": {
            "content": {"hash": {"algorithm": "sha256",
                                 "value": hashlib.sha256(envelope).hexdigest()},
                        "payloadHash": {"algorithm": "sha256",
                                        "value": hashlib.sha256(payload).hexdigest()}},
            "publicKey": base64.b64encode(cert_pem).decode()}}
        annotations = {
            "dev.cosignproject.cosign/signature": "", "predicateType": predicate_type,
            "dev.sigstore.cosign/certificate": cert_pem.decode(),
            "dev.sigstore.cosign/chain": b"".join(
                c.public_bytes(serialization.Encoding.PEM)
                for c in (self.intermediate, self.root)).decode(),
            "dev.sigstore.cosign/bundle": self.log(body, int((start + datetime.timedelta(
                minutes=1)).timestamp()))}
        append_sig_layer(pusher, repository, digest, envelope, annotations, ".att",
                         DSSE_ENVELOPE)

    def log(self, body: dict[str, Any], integrated_time: int) -> str:
        """cosign's `bundle` annotation for an entry `body`: the log's SET over it."""
        encoded = base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
        self.log_index += 1
        entry = {"body": encoded, "integratedTime": integrated_time,
                 "logID": hashlib.sha256(self.rekor_der).hexdigest(), "logIndex": self.log_index}
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        signed = self.rekor_key.sign(canonical, ec.ECDSA(hashes.SHA256()))
        return json.dumps({"SignedEntryTimestamp": base64.b64encode(signed).decode(),
                           "Payload": entry})

    def legacy(self, pusher: Pusher, repository: str, digest: str, email: str, issuer: str,
               **options: Any) -> None:
        """Push a keyless signature of `digest` (see `sign`) as a `.sig` layer."""
        payload, annotations = self.sign(f"{pusher.host}/{repository}", digest, email, issuer,
                                         **options)
        append_sig_layer(pusher, repository, digest, payload, annotations)

    def sign(self, identity: str, digest: str, email: str, issuer: str, *,
             logged_after: datetime.timedelta = datetime.timedelta(minutes=1),
             with_chain: bool = True, usage: Any = ExtendedKeyUsageOID.CODE_SIGNING,
             sct: str = "valid") -> tuple[bytes, dict[str, str]]:
        """Sign `digest` keyless, as `cosign sign` did before bundles: an ephemeral key, a
        leaf issued an hour ago (expired now, as real ones are), and the Rekor entry logged
        `logged_after` the leaf's start (more than ten minutes: logged after it expired).
        The payload and the layer annotations."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - \
            datetime.timedelta(hours=1)
        cert_pem = self.leaf(key, email, issuer, start, usage=usage, sct=sct).public_bytes(
            serialization.Encoding.PEM)
        payload = Signer.payload(identity, digest)
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        annotations = {
            "dev.cosignproject.cosign/signature": base64.b64encode(signature).decode(),
            "dev.sigstore.cosign/certificate": cert_pem.decode(),
            "dev.sigstore.cosign/bundle": self.rekor_bundle(
                payload, signature, cert_pem, int((start + logged_after).timestamp()))}
        if with_chain:
            annotations["dev.sigstore.cosign/chain"] = b"".join(
                c.public_bytes(serialization.Encoding.PEM)
                for c in (self.intermediate, self.root)).decode()
        return payload, annotations


def _der_octets(data: bytes) -> bytes:
    if len(data) < 128:
        return bytes([0x04, len(data)]) + data
    size = (len(data).bit_length() + 7) // 8
    return bytes([0x04, 0x80 | size]) + len(data).to_bytes(size, "big") + data


def _sct_list(ct_key: Any, precert_tbs: bytes, issuer: x509.Certificate,
              tamper: bool = False) -> bytes:
    """The extnValue of an embedded SCT list (RFC 6962 §3.3) with one SCT by `ct_key` over
    the precertificate TBS: DER OCTET STRING of the TLS-encoded SignedCertificateTimestampList."""
    timestamp = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000) - 3_600_000
    issuer_hash = hashlib.sha256(issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    signed = (bytes([0, 0]) + timestamp.to_bytes(8, "big") + (1).to_bytes(2, "big")
              + issuer_hash + len(precert_tbs).to_bytes(3, "big") + precert_tbs
              + (0).to_bytes(2, "big"))
    signature = ct_key.sign(signed + (b"x" if tamper else b""), ec.ECDSA(hashes.SHA256()))
    log_id = hashlib.sha256(ct_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    sct = (bytes([0]) + log_id + timestamp.to_bytes(8, "big") + (0).to_bytes(2, "big")
           + bytes([4, 3]) + len(signature).to_bytes(2, "big") + signature)
    entries = len(sct).to_bytes(2, "big") + sct
    return _der_octets(len(entries).to_bytes(2, "big") + entries)

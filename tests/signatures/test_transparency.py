"""Rekor inclusion proofs and signed checkpoints, without a registry: a Merkle tree built
here from RFC 9162's definition (independently of the verifier), and notes signed by a
test log key."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.signatures import keys, transparency


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _root(leaves: list[bytes]) -> bytes:
    """MTH (RFC 9162 §2.1.1): split at the largest power of two below n."""
    if len(leaves) == 1:
        return _leaf(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _root(leaves[:k]) + _root(leaves[k:])).digest()


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1)."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < k:
        return _path(index, leaves[:k]) + [_root(leaves[k:])]
    return _path(index - k, leaves[k:]) + [_root(leaves[:k])]


LEAVES = [f"entry {i}".encode() for i in range(7)]


@pytest.mark.parametrize("index", range(7))
def test_every_leaf_proves_into_the_root(index: int) -> None:
    root = transparency.root_from_proof(LEAVES[index], index, 7, _path(index, LEAVES))
    assert root == _root(LEAVES)


def test_wrong_proofs_are_refused_or_lead_elsewhere() -> None:
    path = _path(3, LEAVES)
    assert transparency.root_from_proof(LEAVES[4], 3, 7, path) != _root(LEAVES)
    with pytest.raises(transparency.Rejected, match="outside a tree of 7"):
        transparency.root_from_proof(LEAVES[3], 7, 7, path)
    with pytest.raises(transparency.Rejected, match="longer than the tree"):
        transparency.root_from_proof(LEAVES[3], 3, 7, [*path, path[0], path[0]])
    with pytest.raises(transparency.Rejected, match="shorter than the tree"):
        transparency.root_from_proof(LEAVES[3], 3, 7, path[:-1])


@pytest.fixture(scope="module")
def log() -> tuple[ec.EllipticCurvePrivateKey, transparency.Log]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, transparency.Log(keys.load(pem, "log"), hashlib.sha256(der).hexdigest(),
                                 name="test log")


def _note(key: ec.EllipticCurvePrivateKey, log_id: str, text: str, name: str = "rekor.test",
          extra: str = "") -> str:
    signature = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    line = base64.b64encode(bytes.fromhex(log_id)[:4] + signature).decode()
    return f"{text}\n{extra}\u2014 {name} {line}\n"


def test_signed_checkpoint(log: tuple[ec.EllipticCurvePrivateKey, transparency.Log]) -> None:
    key, found = log
    root = base64.b64encode(_root(LEAVES)).decode()
    text = f"rekor.test - 42\n7\n{root}\n"
    witness = "\u2014 witness.example AAAAAAAA\n"  # unknown cosignatures are ignored
    assert transparency.verify_checkpoint(_note(key, found.log_id, text, extra=witness),
                                          found) == (7, _root(LEAVES))
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(transparency.Rejected, match="no valid signature of test log"):
        transparency.verify_checkpoint(_note(other, found.log_id, text), found)
    with pytest.raises(transparency.Rejected, match="no valid signature of test log"):
        transparency.verify_checkpoint(_note(key, found.log_id, text, name="other.test"), found)
    with pytest.raises(transparency.Rejected, match="not a signed note"):
        transparency.verify_checkpoint("rekor.test - 42\n7\n", found)


def test_inclusion_proof_with_checkpoint(
        log: tuple[ec.EllipticCurvePrivateKey, transparency.Log]) -> None:
    key, found = log
    body = base64.b64encode(b'{"kind":"hashedrekord"}').decode()
    leaves = [*LEAVES[:5], base64.b64decode(body), LEAVES[6]]
    root = _root(leaves)
    text = f"rekor.test - 42\n7\n{base64.b64encode(root).decode()}\n"
    proof = {"logIndex": "5", "treeSize": "7", "rootHash": base64.b64encode(root).decode(),
             "hashes": [base64.b64encode(h).decode() for h in _path(5, leaves)],
             "checkpoint": {"envelope": _note(key, found.log_id, text)}}
    entry = transparency.verify_inclusion(body, proof, found)
    assert entry.index == 5 and entry.body == {"kind": "hashedrekord"}
    del proof["checkpoint"]
    with pytest.raises(transparency.Rejected, match="no signed checkpoint"):
        transparency.verify_inclusion(body, proof, found)
    smaller = f"rekor.test - 42\n6\n{base64.b64encode(root).decode()}\n"
    proof["checkpoint"] = {"envelope": _note(key, found.log_id, smaller)}
    with pytest.raises(transparency.Rejected, match="checkpoint signs a tree of 6"):
        transparency.verify_inclusion(body, proof, found)

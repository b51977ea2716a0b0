"""Public keys of signers (cosign `cosign.pub` PEM: ECDSA, RSA or ed25519) and checking a
raw signature with one."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}


class BadKey(ValueError):
    """A configured public key that cannot be used; the message says why."""


def load(pem: bytes | str, where: str) -> PublicKey:
    """A PEM public key; BadKey names `where` it came from and what is wrong."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadKey(f"{where}: not a PEM public key (-----BEGIN PUBLIC KEY-----): {exc}"
                     ) from exc
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _CURVE_HASH:
        raise BadKey(f"{where}: elliptic curve {key.curve.name} is not used by cosign")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
                      | ed25519.Ed25519PublicKey):
        raise BadKey(f"{where}: {type(key).__name__} keys are not supported (use ECDSA, RSA "
                     f"or ed25519)")
    return key


def hash_for(key: PublicKey) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVE_HASH[key.curve.name]()
    return hashes.SHA256()


def verifies(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` over `data` verifies with `key` (the hash follows the key)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_for(key)))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                key.verify(signature, data, padding.PSS(
                    mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                    hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verifies_digest(key: PublicKey, signature: bytes, digest: bytes) -> bool:
    """Whether `signature` verifies over the data whose SHA-256 is `digest` (hashedrekord)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        else:
            return False  # ed25519 signs the message itself, never a digest
    except InvalidSignature:
        return False
    return True

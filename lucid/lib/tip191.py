"""TIP-191 signatures: recovering the TRON address that signed a message (tronpy).

TronWeb ``signMessageV2``: keccak256 over ``"\\x19TRON Signed Message:\\n"`` + the
decimal byte length + the message, secp256k1, a 65-byte signature r‖s‖v with
v ∈ {0, 1, 27, 28}. Pure functions, shared by auth (sign-in) and nodes (node
registration); the address is compared, never the signature's length. ``sign`` makes
one (``lucid sign``).
"""

from __future__ import annotations

import re

from tronpy.keys import BadSignature, PrivateKey, PublicKey, Signature

from lucid.lib import tron

_SIGNATURE = re.compile(r"\A(?:0x)?([0-9a-fA-F]{130})\Z")
ACCEPTED_V = frozenset({0, 1, 27, 28})


def signature_bytes(signature: str) -> bytes | None:
    """The 65 bytes of a hex signature (``0x`` optional) whose v is accepted, else None."""
    found = _SIGNATURE.match(signature)
    if not found:
        return None
    raw = bytes.fromhex(found.group(1))
    return raw if raw[64] in ACCEPTED_V else None


def recover_public_key(message: str, signature: str) -> bytes | None:
    """The public key (64 bytes) that made ``signature`` over ``message`` (TIP-191), or None."""
    raw = signature_bytes(signature)
    if raw is None:
        return None
    try:
        public_key = PublicKey.recover_from_msg(message.encode(), Signature(raw))
    except (BadSignature, ValueError):
        return None
    return bytes(public_key.to_bytes())


def recover_address(message: str, signature: str) -> str | None:
    """The TRON address whose key made ``signature`` over ``message``, or None."""
    public_key = recover_public_key(message, signature)
    return tron.address_of_public_key(public_key) if public_key else None


def sign(private_key: bytes, message: str) -> str:
    """The TIP-191 signature of ``message`` by ``private_key`` (32 bytes), as hex: what
    TronWeb ``signMessageV2`` returns (``lucid sign``, for a console without a wallet)."""
    return str(PrivateKey(private_key).sign_msg(message.encode()).hex())


def address_of_private_key(private_key: bytes) -> str:
    """The TRON address of a private key (32 bytes)."""
    return tron.address_of_public_key(bytes(PrivateKey(private_key).public_key.to_bytes()))


def signed_by(address: str, message: str, signature: str) -> bool:
    """Whether ``signature`` over ``message`` was made by the key of ``address``."""
    return recover_address(message, signature) == address

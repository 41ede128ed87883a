"""The sign-in challenge and its TIP-191 signature (spec 09 §4, DECISIONS "Cryptography").

The message a wallet signs is

    Sign this message to authenticate with Lucid: 2026-01-02T03:04:05Z
    Nonce: 0123456789abcdef0123456789abcdef

Wallets sign it with TIP-191 (TronWeb ``signMessageV2``): keccak256 over
``"\\x19TRON Signed Message:\\n" + decimal byte length + message``, secp256k1, a 65-byte
signature r‖s‖v with v ∈ {0, 1, 27, 28}. The server recovers the public key (tronpy)
and requires its address to be the one that asked for the challenge.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from tronpy.keys import BadSignature, PublicKey, Signature

from lucid.lib import tron

PREFIX = "Sign this message to authenticate with Lucid: "
_NONCE = re.compile(r"\nNonce: ([0-9a-f]{32})\Z")
_SIGNATURE = re.compile(r"\A(?:0x)?([0-9a-fA-F]{130})\Z")
ACCEPTED_V = frozenset({0, 1, 27, 28})


def new_nonce() -> str:
    """A random nonce, 32 hex digits."""
    return secrets.token_hex(16)


def message_for(now: datetime, nonce: str) -> str:
    """The challenge message for a time (UTC) and a nonce."""
    return f"{PREFIX}{now:%Y-%m-%dT%H:%M:%SZ}\nNonce: {nonce}"


def nonce_of(message: str) -> str | None:
    """The nonce a challenge message ends with, if it has one."""
    found = _NONCE.search(message)
    return found.group(1) if found else None


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


def signed_by(address: str, message: str, signature: str) -> bool:
    """Whether ``signature`` over ``message`` was made by the key of ``address``."""
    return recover_address(message, signature) == address

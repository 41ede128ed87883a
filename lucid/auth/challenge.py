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

from lucid.lib.tip191 import recover_address, recover_public_key, signature_bytes, signed_by

__all__ = [
    "PREFIX",
    "message_for",
    "new_nonce",
    "nonce_of",
    "recover_address",
    "recover_public_key",
    "signature_bytes",
    "signed_by",
]

PREFIX = "Sign this message to authenticate with Lucid: "
_NONCE = re.compile(r"\nNonce: ([0-9a-f]{32})\Z")


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

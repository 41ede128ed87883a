"""TRON keys for sign-in: the base58check address of a key and TIP-191 message signatures
(what the auth cluster's Login verifies), with no TRON library."""

from __future__ import annotations

import hashlib
import os

from coincurve import PrivateKey
from Crypto.Hash import keccak

TRON_MESSAGE_PREFIX = b"\x19TRON Signed Message:\n"
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def keccak256(data: bytes) -> bytes:
    """Keccak-256 (not SHA3-256): TRON's hash of keys and messages."""
    digest = keccak.new(digest_bits=256)
    digest.update(data)
    return digest.digest()


def base58check(payload: bytes) -> str:
    """Base58 of the payload and the first 4 bytes of its double SHA-256."""
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = _ALPHABET[rest] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


class TronKey:
    """A TRON private key (secp256k1)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a TRON private key is 32 bytes")
        self._key = PrivateKey(secret)  # refuses 0 and values past the curve order

    @classmethod
    def generate(cls) -> TronKey:
        """A fresh random key."""
        return cls(os.urandom(32))

    @classmethod
    def from_hex(cls, text: str) -> TronKey:
        """A key from its 64 hex digits (``0x`` optional)."""
        return cls(bytes.fromhex(text.removeprefix("0x")))

    @property
    def address(self) -> str:
        """The key's TRON address (``T…``, 34 characters)."""
        public = self._key.public_key.format(compressed=False)[1:]
        return base58check(b"\x41" + keccak256(public)[-20:])

    def sign_message(self, message: str) -> str:
        """The TIP-191 signature of a message as 130 hex digits (r‖s‖v, v 0 or 1)."""
        data = message.encode()
        digest = keccak256(TRON_MESSAGE_PREFIX + str(len(data)).encode() + data)
        return self._key.sign_recoverable(digest, hasher=None).hex()

"""Hierarchical deterministic secp256k1 keys: BIP-39 seeds, BIP-32 derivation, BIP-44 paths.

What a hardware wallet does inside the device, done in software for the wallet that
stands in for one (and for any service that keeps an HD wallet): a BIP-39 mnemonic
becomes a 64-byte seed (PBKDF2-HMAC-SHA512, 2048 rounds), the seed a master key
(HMAC-SHA512 keyed ``Bitcoin seed``), and BIP-32 private derivation walks a path such
as TRON's ``m/44'/195'/0'/0/i``. Pure functions; the elliptic-curve arithmetic is
libsecp256k1's (coincurve).
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass

from coincurve import PrivateKey

HARDENED = 0x8000_0000
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TRON_COIN_TYPE = 195


class DerivationError(ValueError):
    """A path that cannot be parsed, or a key that BIP-32 declares invalid."""


@dataclass(frozen=True)
class ExtendedKey:
    """A private key and its chain code."""

    private_key: bytes
    chain_code: bytes

    @property
    def public_key(self) -> bytes:
        """The compressed public key (33 bytes)."""
        return PrivateKey(self.private_key).public_key.format(compressed=True)

    @property
    def uncompressed_public_key(self) -> bytes:
        """The uncompressed public key without its ``0x04`` prefix (64 bytes)."""
        return PrivateKey(self.private_key).public_key.format(compressed=False)[1:]


def mnemonic_to_seed(mnemonic: str, passphrase: str = "") -> bytes:
    """The BIP-39 seed of a mnemonic (the words are not checked against a word list)."""
    words = unicodedata.normalize("NFKD", " ".join(mnemonic.split()))
    salt = unicodedata.normalize("NFKD", "mnemonic" + passphrase)
    return hashlib.pbkdf2_hmac("sha512", words.encode(), salt.encode(), 2048)


def master_key(seed: bytes) -> ExtendedKey:
    """The BIP-32 master key of a 16 to 64 byte seed."""
    if not 16 <= len(seed) <= 64:
        raise DerivationError("a BIP-32 seed has 16 to 64 bytes")
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    key = int.from_bytes(digest[:32], "big")
    if not 0 < key < CURVE_ORDER:
        raise DerivationError("the seed gives an invalid master key")
    return ExtendedKey(digest[:32], digest[32:])


def child_key(parent: ExtendedKey, index: int) -> ExtendedKey:
    """BIP-32 CKDpriv: the child at ``index`` (hardened when ``index >= 2**31``)."""
    if not 0 <= index < 2**32:
        raise DerivationError("a child index is a 32-bit unsigned number")
    if index >= HARDENED:
        data = b"\0" + parent.private_key + index.to_bytes(4, "big")
    else:
        data = parent.public_key + index.to_bytes(4, "big")
    digest = hmac.new(parent.chain_code, data, hashlib.sha512).digest()
    tweak = int.from_bytes(digest[:32], "big")
    key = (tweak + int.from_bytes(parent.private_key, "big")) % CURVE_ORDER
    if tweak >= CURVE_ORDER or key == 0:  # probability below 2**-127; BIP-32 says skip it
        raise DerivationError(f"index {index} gives an invalid key; use the next one")
    return ExtendedKey(key.to_bytes(32, "big"), digest[32:])


def parse_path(path: str) -> list[int]:
    """``m/44'/195'/0'/0/1`` → child indexes (``'`` or ``h`` marks hardened)."""
    parts = path.strip().split("/")
    if not parts or parts[0] != "m":
        raise DerivationError("a derivation path starts with m")
    indexes = []
    for part in parts[1:]:
        hardened = part.endswith(("'", "h", "H"))
        digits = part[:-1] if hardened else part
        if not digits.isdigit() or int(digits) >= HARDENED:
            raise DerivationError(f"bad path element {part!r}")
        indexes.append(int(digits) + (HARDENED if hardened else 0))
    return indexes


def derive(seed: bytes, path: str) -> ExtendedKey:
    """The key at ``path`` below the master key of ``seed``."""
    key = master_key(seed)
    for index in parse_path(path):
        key = child_key(key, index)
    return key


def tron_path(index: int, account: int = 0) -> str:
    """TRON's BIP-44 path ``m/44'/195'/account'/0/index``."""
    return f"m/44'/{TRON_COIN_TYPE}'/{account}'/0/{index}"

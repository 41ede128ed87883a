"""TRON addresses: Base58Check, hex forms and the address of a secp256k1 public key.

A TRON address is ``0x41 ‖ keccak256(pubkey64)[-20:]`` (21 bytes); its text form is
Base58Check: the 21 bytes followed by ``sha256(sha256(payload))[:4]``, in the Bitcoin
alphabet, 34 characters starting with ``T``. Pure functions, no I/O and no network
client, so auth, nodes and payments can share them (the chain may use them too).
"""

from __future__ import annotations

import hashlib

from Crypto.Hash import keccak

ADDRESS_PREFIX = 0x41
ADDRESS_BYTES = 21
ADDRESS_LENGTH = 34
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(ALPHABET)}


class InvalidAddressError(ValueError):
    """A string that is not a TRON address; ``reason`` says which rule it broke."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """One of ``length``, ``characters``, ``checksum``, ``prefix``."""


def keccak256(data: bytes) -> bytes:
    """Keccak-256 (the pre-standard SHA-3 that Ethereum and TRON use)."""
    return keccak.new(digest_bits=256, data=data).digest()


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]


def b58encode(data: bytes) -> str:
    """Base58 in the Bitcoin alphabet; leading zero bytes become ``1``."""
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rest = divmod(number, 58)
        out.append(ALPHABET[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """The bytes of a Base58 string; raises ``InvalidAddressError`` on a foreign character."""
    number = 0
    for char in text:
        value = _INDEX.get(char)
        if value is None:
            raise InvalidAddressError("characters", f"{char!r} is not a Base58 character")
        number = number * 58 + value
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + body


def b58check_encode(payload: bytes) -> str:
    """Base58Check: the payload and the first 4 bytes of its double SHA-256."""
    return b58encode(payload + _checksum(payload))


def b58check_decode(text: str) -> bytes:
    """The payload of a Base58Check string; raises ``InvalidAddressError`` on a bad checksum."""
    raw = b58decode(text)
    if len(raw) < 5:
        raise InvalidAddressError("length", "too short for Base58Check")
    payload, check = raw[:-4], raw[-4:]
    if _checksum(payload) != check:
        raise InvalidAddressError("checksum", "Base58Check checksum does not match")
    return payload


def decode_address(address: str) -> bytes:
    """The 21 raw bytes (``0x41`` first) of a Base58Check TRON address.

    Raises ``InvalidAddressError`` naming the broken rule: length (34 characters),
    characters (Base58 alphabet), checksum, prefix (``0x41``).
    """
    if len(address) != ADDRESS_LENGTH:
        raise InvalidAddressError("length", f"a TRON address has {ADDRESS_LENGTH} characters")
    payload = b58check_decode(address)
    if len(payload) != ADDRESS_BYTES:
        raise InvalidAddressError("length", f"a TRON address holds {ADDRESS_BYTES} bytes")
    if payload[0] != ADDRESS_PREFIX:
        raise InvalidAddressError("prefix", "a TRON address starts with the byte 0x41")
    return payload


def is_address(address: str) -> bool:
    """Whether ``address`` is a valid Base58Check TRON address."""
    try:
        decode_address(address)
    except InvalidAddressError:
        return False
    return True


def encode_address(raw: bytes) -> str:
    """The Base58Check text of 21 raw address bytes (``0x41`` first)."""
    if len(raw) != ADDRESS_BYTES or raw[0] != ADDRESS_PREFIX:
        raise InvalidAddressError("prefix", "expected 21 bytes starting with 0x41")
    return b58check_encode(raw)


def to_hex(address: str) -> str:
    """``T…`` → ``41…`` (42 hex digits)."""
    return decode_address(address).hex()


def from_hex(hex_address: str) -> str:
    """``41…`` (or ``0x41…``) → ``T…``."""
    text = hex_address.removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidAddressError("characters", "not a hex address") from None
    return encode_address(raw)


def address_of_public_key(public_key: bytes) -> str:
    """The address of an uncompressed secp256k1 public key (64 bytes, or 65 with ``0x04``)."""
    if len(public_key) == 65 and public_key[0] == 4:
        public_key = public_key[1:]
    if len(public_key) != 64:
        raise ValueError("expected an uncompressed public key (64 or 65 bytes)")
    return encode_address(bytes([ADDRESS_PREFIX]) + keccak256(public_key)[-20:])

"""The pure TRON primitives: Base58Check addresses, BIP-32/39/44 derivation (with the
published test vectors), and TIP-191 signature recovery."""

from __future__ import annotations

import os
from datetime import datetime

import pytest
from tronpy.keys import PrivateKey, to_base58check_address, to_hex_address

from lucid.auth import challenge
from lucid.lib import hdkeys, tron

USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USDT_HEX = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"


def test_known_address_round_trips() -> None:
    assert tron.to_hex(USDT) == USDT_HEX
    assert tron.from_hex(USDT_HEX) == USDT
    assert tron.from_hex("0x" + USDT_HEX) == USDT
    assert tron.is_address(USDT)


def test_addresses_agree_with_tronpy() -> None:
    for _ in range(20):
        key = PrivateKey.random()
        ours = tron.address_of_public_key(key.public_key.to_bytes())
        assert ours == key.public_key.to_base58check_address()
        assert tron.to_hex(ours) == to_hex_address(ours)
        raw = os.urandom(20)
        assert tron.encode_address(b"\x41" + raw) == to_base58check_address(b"\x41" + raw)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (USDT[:-1] + ("u" if USDT[-1] != "u" else "v"), "checksum"),
        (USDT[:-1], "length"),
        (USDT + "1", "length"),
        (USDT[:5] + "0" + USDT[6:], "characters"),
        (USDT[:5] + "l" + USDT[6:], "characters"),
        (tron.b58check_encode(b"\x00" * 21), "length"),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "prefix"),
    ],
)
def test_invalid_addresses_name_the_broken_rule(address: str, reason: str) -> None:
    with pytest.raises(tron.InvalidAddressError) as caught:
        tron.decode_address(address)
    assert caught.value.reason == reason
    assert not tron.is_address(address)


def test_wrong_prefix_is_refused() -> None:
    other = tron.b58check_encode(b"\x42" + os.urandom(20))
    assert len(other) == 34
    with pytest.raises(tron.InvalidAddressError) as caught:
        tron.decode_address(other)
    assert caught.value.reason == "prefix"


def test_base58_keeps_leading_zero_bytes() -> None:
    for data in (b"", b"\0", b"\0\0\x01", os.urandom(25), b"\0" + os.urandom(10)):
        assert tron.b58decode(tron.b58encode(data)) == data


# BIP-32 test vector 1 (seed 000102…0f): master and m/0H/1/2H/2/1000000000.
BIP32_SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def test_bip32_vector_1() -> None:
    master = hdkeys.master_key(BIP32_SEED)
    assert master.private_key.hex() == (
        "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35"
    )
    assert master.chain_code.hex() == (
        "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508"
    )
    leaf = hdkeys.derive(BIP32_SEED, "m/0'/1/2'/2/1000000000")
    assert leaf.private_key.hex() == (
        "471b76e389e528d6de6d816857e012c5455051cad6660850e58372a6c3e6e7c8"
    )
    assert hdkeys.derive(BIP32_SEED, "m/0H/1/2h/2/1000000000") == leaf


def test_bip39_seed_vector() -> None:
    seed = hdkeys.mnemonic_to_seed("abandon " * 11 + "about", "TREZOR")
    assert seed.hex().startswith("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e5349553")


def test_tron_bip44_path() -> None:
    assert hdkeys.tron_path(3) == "m/44'/195'/0'/0/3"
    seed = hdkeys.mnemonic_to_seed("abandon " * 11 + "about")
    key = hdkeys.derive(seed, hdkeys.tron_path(0))
    assert tron.address_of_public_key(key.uncompressed_public_key) == (
        "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH"
    )


@pytest.mark.parametrize("path", ["44'/0", "m/x", "m/2147483648", "m/1''", ""])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(hdkeys.DerivationError):
        hdkeys.parse_path(path)


def test_tip191_recovery() -> None:
    key = PrivateKey.random()
    address = key.public_key.to_base58check_address()
    message = challenge.message_for(datetime(2026, 1, 2, 3, 4, 5), "ab" * 16)
    signature = key.sign_msg(message.encode())
    assert challenge.nonce_of(message) == "ab" * 16
    assert challenge.signed_by(address, message, signature.hex())
    assert challenge.signed_by(address, message, "0x" + signature.tronweb_hex())
    assert not challenge.signed_by(address, message + " ", signature.hex())
    assert not challenge.signed_by(address, message, "00" * 65)
    assert challenge.recover_address(message, "zz") is None
    assert challenge.nonce_of("no nonce here") is None

"""TRON's ``Transaction.raw`` in protobuf wire format, and the txID derived from it.

The schema is written here by hand from the public field numbers of
``core/Tron.proto`` and ``core/contract/*.proto`` (tronprotocol/protocol); none of
its LGPL files is copied. Proto3 rules: fields in number order, zero values left
out. The txID of a transaction is ``sha256(raw)``; a block id is the block number
(8 bytes) followed by the last 24 bytes of ``sha256(BlockHeader.raw)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from lucid.lib import tron

CONTRACT_TYPES: Mapping[str, int] = {
    "TransferContract": 1,
    "VoteWitnessContract": 4,
    "WithdrawBalanceContract": 13,
    "TriggerSmartContract": 31,
    "FreezeBalanceV2Contract": 54,
    "UnfreezeBalanceV2Contract": 55,
    "WithdrawExpireUnfreezeContract": 56,
    "DelegateResourceContract": 57,
    "UnDelegateResourceContract": 58,
}
"""``Transaction.Contract.ContractType`` values of the contracts the devnet runs."""

RESOURCES: Mapping[str, int] = {"BANDWIDTH": 0, "ENERGY": 1, "TRON_POWER": 2}
"""``ResourceCode``."""


class EncodeError(ValueError):
    """A transaction that cannot be encoded (unknown contract, malformed field)."""


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value) if value else b""


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value if value else b""


def _hex(value: Any) -> bytes:
    if value in (None, ""):
        return b""
    if not isinstance(value, str):
        raise EncodeError(f"expected a hex string, got {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise EncodeError(f"not hex: {value[:20]!r}") from None


def _address(value: Any) -> bytes:
    """An address field: hex ``41…`` (tronpy's form) or Base58Check (``visible``)."""
    if value in (None, ""):
        return b""
    if isinstance(value, str) and value.startswith("T"):
        try:
            return tron.decode_address(value)
        except tron.InvalidAddressError as exc:
            raise EncodeError(str(exc)) from None
    raw = _hex(value)
    if len(raw) != tron.ADDRESS_BYTES or raw[0] != tron.ADDRESS_PREFIX:
        raise EncodeError("an address must be 21 bytes starting with 0x41")
    return raw


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"expected an integer, got {value!r}")
    return value


def _resource(value: Any) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, int):
        return value
    if value not in RESOURCES:
        raise EncodeError(f"unknown resource {value!r}")
    return RESOURCES[value]


def _transfer(v: Mapping[str, Any]) -> bytes:
    return (
        _bytes(1, _address(v.get("owner_address")))
        + _bytes(2, _address(v.get("to_address")))
        + _int(3, _number(v.get("amount", 0)))
    )


def _trigger(v: Mapping[str, Any]) -> bytes:
    return (
        _bytes(1, _address(v.get("owner_address")))
        + _bytes(2, _address(v.get("contract_address")))
        + _int(3, _number(v.get("call_value", 0)))
        + _bytes(4, _hex(v.get("data")))
        + _int(5, _number(v.get("call_token_value", 0)))
        + _int(6, _number(v.get("token_id", 0)))
    )


def _freeze(v: Mapping[str, Any]) -> bytes:
    return (
        _bytes(1, _address(v.get("owner_address")))
        + _int(2, _number(v.get("frozen_balance", 0)))
        + _int(3, _resource(v.get("resource")))
    )


def _unfreeze(v: Mapping[str, Any]) -> bytes:
    return (
        _bytes(1, _address(v.get("owner_address")))
        + _int(2, _number(v.get("unfreeze_balance", 0)))
        + _int(3, _resource(v.get("resource")))
    )


def _owner_only(v: Mapping[str, Any]) -> bytes:
    return _bytes(1, _address(v.get("owner_address")))


def _delegate(v: Mapping[str, Any]) -> bytes:
    return (
        _bytes(1, _address(v.get("owner_address")))
        + _int(2, _resource(v.get("resource")))
        + _int(3, _number(v.get("balance", 0)))
        + _bytes(4, _address(v.get("receiver_address")))
        + _int(5, 1 if v.get("lock") else 0)
        + _int(6, _number(v.get("lock_period", 0)))
    )


def _undelegate(v: Mapping[str, Any]) -> bytes:
    return (
        _bytes(1, _address(v.get("owner_address")))
        + _int(2, _resource(v.get("resource")))
        + _int(3, _number(v.get("balance", 0)))
        + _bytes(4, _address(v.get("receiver_address")))
    )


def _vote(v: Mapping[str, Any]) -> bytes:
    votes = b"".join(
        _bytes(2, _bytes(1, _address(x.get("vote_address"))) + _int(2, _number(x["vote_count"])))
        for x in v.get("votes", [])
    )
    return _bytes(1, _address(v.get("owner_address"))) + votes


_ENCODERS: Mapping[str, Callable[[Mapping[str, Any]], bytes]] = {
    "TransferContract": _transfer,
    "TriggerSmartContract": _trigger,
    "FreezeBalanceV2Contract": _freeze,
    "UnfreezeBalanceV2Contract": _unfreeze,
    "WithdrawExpireUnfreezeContract": _owner_only,
    "WithdrawBalanceContract": _owner_only,
    "DelegateResourceContract": _delegate,
    "UnDelegateResourceContract": _undelegate,
    "VoteWitnessContract": _vote,
}


def _contract(contract: Mapping[str, Any]) -> bytes:
    kind = str(contract.get("type"))
    if kind not in _ENCODERS:
        raise EncodeError(f"unsupported contract type {kind!r}")
    parameter = contract.get("parameter") or {}
    value = parameter.get("value")
    if not isinstance(value, Mapping):
        raise EncodeError("contract parameter has no value")
    type_url = str(parameter.get("type_url") or f"type.googleapis.com/protocol.{kind}")
    encoded_any = _bytes(1, type_url.encode()) + _bytes(2, _ENCODERS[kind](value))
    return (
        _int(1, CONTRACT_TYPES[kind])
        + _bytes(2, encoded_any)
        + _bytes(3, _hex(contract.get("provider")))
        + _bytes(4, _hex(contract.get("ContractName")))
        + _int(5, _number(contract.get("Permission_id", 0)))
    )


def encode_raw(raw: Mapping[str, Any]) -> bytes:
    """The protobuf bytes of a ``Transaction.raw`` given as java-tron JSON."""
    try:
        contracts = raw["contract"]
        if not isinstance(contracts, list) or len(contracts) != 1:
            raise EncodeError("a transaction carries exactly one contract")
        return (
            _bytes(1, _hex(raw.get("ref_block_bytes")))
            + _int(3, _number(raw.get("ref_block_num", 0)))
            + _bytes(4, _hex(raw.get("ref_block_hash")))
            + _int(8, _number(raw.get("expiration", 0)))
            + _bytes(10, _hex(raw.get("data")))
            + b"".join(_bytes(11, _contract(c)) for c in contracts)
            + _int(14, _number(raw.get("timestamp", 0)))
            + _int(18, _number(raw.get("fee_limit", 0)))
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise EncodeError(f"malformed raw_data: {exc}") from None


def txid(raw: Mapping[str, Any]) -> str:
    """The txID: hex SHA-256 of the encoded ``raw_data``."""
    return hashlib.sha256(encode_raw(raw)).hexdigest()


def block_id(number: int, timestamp_ms: int, parent: bytes, tx_root: bytes, witness: bytes) -> str:
    """The id of a block: its number (8 bytes) ‖ ``sha256(BlockHeader.raw)[8:]``."""
    header = (
        _int(1, timestamp_ms)
        + _bytes(2, tx_root)
        + _bytes(3, parent)
        + _int(7, number)
        + _bytes(9, witness)
    )
    digest = hashlib.sha256(header).digest()
    return (number.to_bytes(8, "big") + digest[8:]).hex()

"""The devnet's USDT: a native TRC20 token (6 decimals) behind the ABI of Tether's contract.

Calls arrive as TVM call data (a 4-byte selector and 32-byte ABI words), exactly as
tronpy encodes them; results and ``Transfer``/``Approval`` logs come back ABI-encoded.
Token state is plain integers keyed by hex address (``41…``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lucid.lib.tron import keccak256

DECIMALS = 6
SELECTORS = {
    "a9059cbb": "transfer",
    "70a08231": "balanceOf",
    "095ea7b3": "approve",
    "dd62ed3e": "allowance",
    "23b872dd": "transferFrom",
    "313ce567": "decimals",
    "95d89b41": "symbol",
    "06fdde03": "name",
    "18160ddd": "totalSupply",
}
"""The 4-byte selectors of the TRC20 methods the contract answers."""
TRANSFER_TOPIC = keccak256(b"Transfer(address,address,uint256)").hex()
APPROVAL_TOPIC = keccak256(b"Approval(address,address,uint256)").hex()
VIEW_METHODS = frozenset({"balanceOf", "allowance", "decimals", "symbol", "name", "totalSupply"})
UINT256_MAX = (1 << 256) - 1


def _fn(name: str, inputs: list[tuple[str, str]], outputs: list[str], view: bool) -> dict[str, Any]:
    return {
        "type": "Function",
        "name": name,
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [{"type": t} for t in outputs],
        "stateMutability": "View" if view else "Nonpayable",
        **({"constant": True} if view else {}),
    }


ABI: list[dict[str, Any]] = [
    _fn("name", [], ["string"], True),
    _fn("symbol", [], ["string"], True),
    _fn("decimals", [], ["uint8"], True),
    _fn("totalSupply", [], ["uint256"], True),
    _fn("balanceOf", [("who", "address")], ["uint256"], True),
    _fn("allowance", [("_owner", "address"), ("_spender", "address")], ["uint256"], True),
    _fn("transfer", [("_to", "address"), ("_value", "uint256")], ["bool"], False),
    _fn("approve", [("_spender", "address"), ("_value", "uint256")], ["bool"], False),
    _fn(
        "transferFrom",
        [("_from", "address"), ("_to", "address"), ("_value", "uint256")],
        ["bool"],
        False,
    ),
    {
        "type": "Event",
        "name": "Transfer",
        "inputs": [
            {"indexed": True, "name": "from", "type": "address"},
            {"indexed": True, "name": "to", "type": "address"},
            {"name": "value", "type": "uint256"},
        ],
    },
    {
        "type": "Event",
        "name": "Approval",
        "inputs": [
            {"indexed": True, "name": "owner", "type": "address"},
            {"indexed": True, "name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"},
        ],
    },
]
"""The contract's ABI as ``wallet/getcontract`` returns it under ``abi.entrys``."""


class CallError(ValueError):
    """Call data the contract cannot decode (the TVM reverts)."""


class RevertError(Exception):
    """The contract reverted with ``Error(string)``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def encoded(self) -> str:
        """The revert data: ``Error(string)`` ABI-encoded."""
        text = self.reason.encode()
        padded = text + b"\0" * (-len(text) % 32)
        return (
            keccak256(b"Error(string)")[:4]
            + (32).to_bytes(32, "big")
            + len(text).to_bytes(32, "big")
            + padded
        ).hex()


def word(value: int) -> str:
    """One ABI word of an unsigned integer."""
    return value.to_bytes(32, "big").hex()


def address_word(hex_address: str) -> str:
    """One ABI word of a TRON address (its 20 bytes, the 0x41 dropped)."""
    return "00" * 12 + hex_address[2:]


def _string(text: str) -> str:
    data = text.encode()
    return word(32) + word(len(data)) + (data + b"\0" * (-len(data) % 32)).hex()


@dataclass
class Call:
    """A decoded call: the method and its arguments (addresses as hex ``41…``)."""

    method: str
    args: list[Any]


def decode_call(data_hex: str) -> Call:
    """Decodes TVM call data; raises ``CallError`` on an unknown selector or short data."""
    try:
        data = bytes.fromhex(data_hex)
    except ValueError:
        raise CallError("call data is not hex") from None
    method = SELECTORS.get(data[:4].hex())
    if method is None:
        raise CallError("unknown function selector")
    words = [data[4 + i : 36 + i] for i in range(0, len(data) - 4, 32)]
    kinds = {
        "transfer": ["address", "uint"],
        "balanceOf": ["address"],
        "approve": ["address", "uint"],
        "allowance": ["address", "address"],
        "transferFrom": ["address", "address", "uint"],
    }.get(method, [])
    if len(words) < len(kinds) or any(len(w) != 32 for w in words[: len(kinds)]):
        raise CallError("call data too short")
    args: list[Any] = []
    for kind, raw in zip(kinds, words, strict=False):
        if kind == "address":
            if any(raw[:12]):
                raise CallError("address argument has dirty high bytes")
            args.append("41" + raw[12:].hex())
        else:
            args.append(int.from_bytes(raw, "big"))
    return Call(method, args)


@dataclass
class Token:
    """The token's state."""

    contract: str
    """The contract's hex address."""
    balances: dict[str, int] = field(default_factory=dict)
    allowances: dict[str, int] = field(default_factory=dict)
    name: str = "Tether USD"
    symbol: str = "USDT"

    def balance(self, owner: str) -> int:
        return self.balances.get(owner, 0)

    def allowance(self, owner: str, spender: str) -> int:
        return self.allowances.get(f"{owner}:{spender}", 0)

    def view(self, call: Call) -> str:
        """The ABI-encoded result of a view method."""
        if call.method == "balanceOf":
            return word(self.balance(call.args[0]))
        if call.method == "allowance":
            return word(self.allowance(call.args[0], call.args[1]))
        if call.method == "decimals":
            return word(DECIMALS)
        if call.method == "totalSupply":
            return word(sum(self.balances.values()))
        if call.method == "symbol":
            return _string(self.symbol)
        if call.method == "name":
            return _string(self.name)
        raise CallError(f"{call.method} is not a view method")

    def _move(self, source: str, target: str, value: int) -> None:
        if value > UINT256_MAX or value < 0:
            raise RevertError("value out of range")
        if self.balance(source) < value:
            raise RevertError("insufficient balance")
        self.balances[source] = self.balance(source) - value
        self.balances[target] = self.balance(target) + value

    def execute(self, caller: str, call: Call) -> tuple[str, list[dict[str, Any]]]:
        """Runs a state-changing method: its ABI result and its logs. Raises ``RevertError``."""
        contract20 = self.contract[2:]
        if call.method == "transfer":
            target, value = call.args
            self._move(caller, target, value)
            return word(1), [self._log(TRANSFER_TOPIC, caller, target, value, contract20)]
        if call.method == "approve":
            spender, value = call.args
            self.allowances[f"{caller}:{spender}"] = value
            return word(1), [self._log(APPROVAL_TOPIC, caller, spender, value, contract20)]
        if call.method == "transferFrom":
            source, target, value = call.args
            allowed = self.allowance(source, caller)
            if allowed < value:
                raise RevertError("insufficient allowance")
            self._move(source, target, value)
            self.allowances[f"{source}:{caller}"] = allowed - value
            return word(1), [self._log(TRANSFER_TOPIC, source, target, value, contract20)]
        raise CallError(f"{call.method} is a view method")

    @staticmethod
    def _log(topic: str, a: str, b: str, value: int, contract20: str) -> dict[str, Any]:
        return {
            "address": contract20,
            "topics": [topic, address_word(a), address_word(b)],
            "data": word(value),
        }

    def to_json(self) -> dict[str, Any]:
        return {"balances": self.balances, "allowances": self.allowances}

    @classmethod
    def from_json(cls, contract: str, data: dict[str, Any]) -> Token:
        return cls(contract, dict(data.get("balances", {})), dict(data.get("allowances", {})))

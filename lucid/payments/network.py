"""The TRON network as the payments cluster sees it: unmodified tronpy over HTTP.

The endpoint is configuration (``lucid devnet tron`` on one machine, a Nile or
mainnet node in production). Broadcast outcomes are told apart precisely because
exactly-once depends on them: accepted, already known (``DUP_TRANSACTION_ERROR``,
which means sent), refused with a reason (nothing was sent), or unknown (a timeout
or a lost answer: the transaction may or may not be in the network).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tronpy import AsyncTron
from tronpy.async_contract import AsyncContract
from tronpy.async_tron import AsyncTransaction
from tronpy.exceptions import (
    AddressNotFound,
    ApiError,
    NotFound,
    TransactionError,
    TvmError,
    UnknownError,
    ValidationError,
)
from tronpy.providers import AsyncHTTPProvider

from lucid.lib import tron
from lucid.payments.store.payouts import SentTx
from lucid.runtime.errors import ErrorCode, LucidError

NODE_ERRORS = (
    httpx.HTTPError,
    ApiError,
    NotFound,
    TransactionError,
    TvmError,
    UnknownError,
    ValidationError,
    KeyError,
    ValueError,
)
"""What tronpy raises when a node cannot be reached or answers with an error."""


class Outcome(enum.Enum):
    """What a broadcast did."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class BroadcastResult:
    """A broadcast's outcome; ``code`` and ``message`` when refused or unknown."""

    outcome: Outcome
    code: str = ""
    message: str = ""


class NetworkError(Exception):
    """The node could not be reached or answered nonsense."""

    def as_lucid(self) -> LucidError:
        """What a caller is told: UNAVAILABLE ``LUCID_ERR_4010``."""
        error = LucidError(
            ErrorCode.ERROR_CODE_PAYMENT_NETWORK_UNAVAILABLE, "the TRON network is unreachable"
        )
        error.__cause__ = self
        return error


@dataclass(frozen=True)
class Receipt:
    """A mined transaction's receipt."""

    block_number: int
    block_time_ms: int
    fee_sun: int
    energy_used: int
    bandwidth_used: int
    result: str
    """``SUCCESS``, ``REVERT``, ``OUT_OF_ENERGY`` or another TVM result."""
    message: str
    transfers: tuple[tuple[str, int], ...] = ()
    """The TRC20 ``Transfer`` events: (recipient as Base58Check, amount)."""
    events: tuple[TransferEvent, ...] = ()
    """The same events in full: the emitting contract and the sender too."""


@dataclass(frozen=True)
class TransferEvent:
    """One TRC20 ``Transfer`` event of a receipt's log (addresses as Base58Check)."""

    contract: str
    sender: str
    recipient: str
    amount: int


def _decode(text: str) -> str:
    try:
        return bytes.fromhex(text).decode("utf-8", "replace")
    except ValueError:
        return text


class TronNetwork:
    """One node, the USDT contract and the fee limit."""

    def __init__(
        self, endpoint: str, usdt_contract: str, fee_limit_sun: int, timeout_s: float = 10.0
    ) -> None:
        self.endpoint = endpoint
        self.usdt_contract = usdt_contract
        self.fee_limit_sun = fee_limit_sun
        self.client = AsyncTron(AsyncHTTPProvider(endpoint, timeout=timeout_s))
        self._contract: AsyncContract | None = None

    async def close(self) -> None:
        await self.client.close()

    async def _request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self.client.provider.make_request(path, body)
        except NODE_ERRORS as exc:
            raise NetworkError(f"{path}: {exc}") from exc
        if not isinstance(answer, dict):
            raise NetworkError(f"{path}: not a JSON object")
        return answer

    async def contract(self) -> AsyncContract:
        if self._contract is None:
            try:
                self._contract = await self.client.get_contract(self.usdt_contract)
            except NODE_ERRORS as exc:
                raise NetworkError(f"the USDT contract: {exc}") from exc
        return self._contract

    async def usdt_balance(self, address: str) -> int:
        contract = await self.contract()
        try:
            return int(await contract.functions.balanceOf(address))
        except NODE_ERRORS as exc:
            raise NetworkError(f"balanceOf: {exc}") from exc

    async def usdt_allowance(self, owner: str, spender: str) -> int:
        contract = await self.contract()
        try:
            return int(await contract.functions.allowance(owner, spender))
        except NODE_ERRORS as exc:
            raise NetworkError(f"allowance: {exc}") from exc

    async def trx_balance(self, address: str) -> int:
        """The TRX balance in sun (0 for an account the network does not know)."""
        try:
            account = await self.client.get_account(address)
        except AddressNotFound:
            return 0
        except NODE_ERRORS as exc:
            raise NetworkError(f"getaccount: {exc}") from exc
        return int(account.get("balance", 0))

    async def status(self) -> tuple[int, int, int]:
        """The head block's number and time (ms), and the solid block's number."""
        info = await self._request("wallet/getnodeinfo", {})
        head = await self._request("wallet/getnowblock", {})
        try:
            solid = int(str(info["solidityBlock"]).split(",ID:", 1)[0].replace("Num:", "", 1))
            raw = head["block_header"]["raw_data"]
            return int(raw["number"]), int(raw["timestamp"]), solid
        except (KeyError, ValueError, TypeError) as exc:
            raise NetworkError(f"getnodeinfo: {exc}") from exc

    async def parameters(self) -> dict[str, int]:
        """The chain parameters (``getEnergyFee``, ``getTransactionFee``, …)."""
        answer = await self._request("wallet/getchainparameters", {})
        return {str(p.get("key")): int(p.get("value", 0)) for p in answer.get("chainParameter", [])}

    async def head_number(self) -> int:
        try:
            return int(await self.client.get_latest_block_number())
        except NODE_ERRORS as exc:
            raise NetworkError(f"getnodeinfo: {exc}") from exc

    async def sign_usdt_transfer(
        self,
        owner: str,
        recipient: str,
        amount_micros: int,
        sign: Callable[[AsyncTransaction], None],
        *,
        lifetime_ms: int = 60_000,
    ) -> SentTx:
        """Builds (ref block from the node) and signs a USDT transfer; nothing is sent."""
        contract = await self.contract()
        try:
            builder = await contract.functions.transfer(recipient, amount_micros)
            builder = builder.with_owner(owner).fee_limit(self.fee_limit_sun)
            txn = await builder.expiration(lifetime_ms).build()
        except NODE_ERRORS as exc:
            raise NetworkError(f"building a transfer: {exc}") from exc
        sign(txn)
        signed = txn.to_json()
        return SentTx(
            txid=str(txn.txid), signed=signed, expiration_ms=int(signed["raw_data"]["expiration"])
        )

    async def sign_transfer(
        self,
        currency: int,
        owner: str,
        recipient: str,
        amount_micros: int,
        sign: Callable[[AsyncTransaction], None],
        *,
        memo: str = "",
        lifetime_ms: int = 60_000,
    ) -> SentTx:
        """Builds and signs a TRX (``currency`` 2, sun) or USDT (1, micro-USDT) transfer
        with the node's reference block; nothing is sent."""
        try:
            if currency == 2:
                builder: Any = self.client.trx.transfer(owner, recipient, amount_micros)
            else:
                contract = await self.contract()
                method = await contract.functions.transfer(recipient, amount_micros)
                builder = method.with_owner(owner).fee_limit(self.fee_limit_sun)
            if memo:
                builder = builder.memo(memo)
            txn = await builder.expiration(lifetime_ms).build()
        except NODE_ERRORS as exc:
            raise NetworkError(f"building a transfer: {exc}") from exc
        sign(txn)
        signed = txn.to_json()
        return SentTx(
            txid=str(txn.txid), signed=signed, expiration_ms=int(signed["raw_data"]["expiration"])
        )

    async def reward(self, address: str) -> int:
        """The voting reward an address can claim now, in sun (``wallet/getReward``)."""
        answer = await self._request("wallet/getReward", {"address": address, "visible": True})
        try:
            return int(answer.get("reward", 0))
        except (TypeError, ValueError) as exc:
            raise NetworkError(f"getReward: {exc}") from exc

    async def sign_wallet_tx(
        self,
        kind: str,
        owner: str,
        params: dict[str, Any],
        sign: Callable[[AsyncTransaction], None],
    ) -> SentTx:
        """Builds and signs a wallet's transaction: ``freeze``, ``unfreeze``, ``withdraw``
        (Stake 2.0), ``transfer`` or ``approve`` (USDT)."""
        try:
            builder = await self._builder(kind, owner, params)
            txn = await builder.build()
        except NODE_ERRORS as exc:
            raise NetworkError(f"building a {kind}: {exc}") from exc
        sign(txn)
        signed = txn.to_json()
        return SentTx(
            txid=str(txn.txid), signed=signed, expiration_ms=int(signed["raw_data"]["expiration"])
        )

    async def _builder(self, kind: str, owner: str, params: dict[str, Any]) -> Any:
        trx = self.client.trx
        if kind == "freeze":
            return trx.freeze_balance(owner, params["amount"], params["resource"])
        if kind == "unfreeze":
            return trx.unfreeze_balance(
                owner, params["resource"], unfreeze_balance=params["amount"]
            )
        if kind == "withdraw":
            return trx.withdraw_stake_balance(owner)
        functions = (await self.contract()).functions
        if kind == "transfer":
            method = await functions.transfer(params["to"], params["amount"])
        else:
            method = await functions.approve(params["to"], params["amount"])
        builder = method.with_owner(owner).fee_limit(params.get("fee_limit") or self.fee_limit_sun)
        if params.get("memo"):
            builder = builder.memo(params["memo"])
        return builder

    async def account(self, address: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """``getaccount`` and ``getaccountresource`` of an address (``{}`` when unknown)."""
        body = {"address": address, "visible": True}
        return (
            await self._request("wallet/getaccount", body),
            await self._request("wallet/getaccountresource", body),
        )

    async def broadcast(self, signed: dict[str, Any]) -> BroadcastResult:
        try:
            answer = await self._request("wallet/broadcasttransaction", signed)
        except NetworkError as exc:
            return BroadcastResult(Outcome.UNKNOWN, "NETWORK", str(exc))
        if answer.get("result") is True:
            return BroadcastResult(Outcome.ACCEPTED)
        code = str(answer.get("code", ""))
        message = _decode(str(answer.get("message", answer.get("Error", ""))))
        if code == "DUP_TRANSACTION_ERROR":
            return BroadcastResult(Outcome.DUPLICATE, code, message)
        if code:
            return BroadcastResult(Outcome.REFUSED, code, message)
        return BroadcastResult(Outcome.UNKNOWN, "UNKNOWN", message or str(answer)[:200])

    async def trx_transfer(self, txid: str) -> tuple[str, int] | None:
        """The recipient (Base58Check) and amount in sun of a known TRX transfer; None
        for an unknown transaction or another kind."""
        answer = await self._request("wallet/gettransactionbyid", {"value": txid})
        try:
            contract = answer["raw_data"]["contract"][0]
            if contract["type"] != "TransferContract":
                return None
            value = contract["parameter"]["value"]
            to = str(value["to_address"])
            if not to.startswith("T"):
                to = tron.encode_address(bytes.fromhex(to))
            return to, int(value["amount"])
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    async def receipt(self, txid: str, *, solid: bool = False) -> Receipt | None:
        """The receipt of a mined transaction (``solid``: only once irreversible)."""
        prefix = "walletsolidity" if solid else "wallet"
        info = await self._request(f"{prefix}/gettransactioninfobyid", {"value": txid})
        if not info:
            return None
        receipt = info.get("receipt", {})
        result = str(receipt.get("result", "SUCCESS"))
        message = _decode(str(info.get("resMessage", "")))
        return Receipt(
            block_number=int(info.get("blockNumber", 0)),
            block_time_ms=int(info.get("blockTimeStamp", 0)),
            fee_sun=int(info.get("fee", 0)),
            energy_used=int(receipt.get("energy_usage_total", 0)),
            bandwidth_used=int(receipt.get("net_usage", 0)),
            result=result,
            message=message,
            transfers=_transfers(info.get("log", [])),
            events=transfer_events(info.get("log", [])),
        )


TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def _transfers(logs: Any) -> tuple[tuple[str, int], ...]:
    found = []
    for entry in logs if isinstance(logs, list) else []:
        topics = entry.get("topics", [])
        if len(topics) == 3 and topics[0] == TRANSFER_TOPIC:
            try:
                to = tron.encode_address(bytes.fromhex("41" + topics[2][-40:]))
                found.append((to, int(entry.get("data", "0") or "0", 16)))
            except ValueError:
                continue
    return tuple(found)


def transfer_events(logs: Any) -> tuple[TransferEvent, ...]:
    """Every well-formed TRC20 ``Transfer`` event of a receipt's log."""
    found = []
    for entry in logs if isinstance(logs, list) else []:
        topics = entry.get("topics", []) if isinstance(entry, dict) else []
        if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
            continue
        try:
            found.append(
                TransferEvent(
                    contract=tron.encode_address(bytes.fromhex("41" + str(entry["address"])[-40:])),
                    sender=tron.encode_address(bytes.fromhex("41" + topics[1][-40:])),
                    recipient=tron.encode_address(bytes.fromhex("41" + topics[2][-40:])),
                    amount=int(entry.get("data", "0") or "0", 16),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(found)

"""The node's registration stake (spec 05 §4: at least 100 USDT), paid before registering.

A USDT-TRC20 transfer from the node's TRON address to the stake address
(``settings.tron_stake_address``), built with tronpy against the TRON network
(``settings.tron_endpoint``: ``lucid devnet tron`` on one machine), signed with the
node's TRON key and broadcast. Its id and expiration are written to
``<state dir>/stake.json`` before it is sent, so a restarted agent follows the same
transaction instead of paying again; only a transaction that expired unseen is paid
anew. The agent then waits until the transfer is in a solid block (the nodes cluster
verifies the stake through cluster 07, which accepts only irreversible ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tronpy import AsyncTron
from tronpy.exceptions import (
    ApiError,
    NotFound,
    TransactionError,
    UnknownError,
    ValidationError,
)
from tronpy.providers import AsyncHTTPProvider

from lucid.nodeagent.keys import AgentKeys
from lucid.runtime.config import Settings

log = logging.getLogger("lucid.nodeagent")

STAKE_FILE = "stake.json"
TX_LIFETIME_MS = 60_000
EXPIRY_MARGIN_S = 10.0
POLL_S = 1.0
NETWORK_ERRORS = (
    httpx.HTTPError,
    ApiError,
    NotFound,
    TransactionError,
    UnknownError,
    ValidationError,
    KeyError,
    TypeError,
    ValueError,
)
"""What tronpy raises when the network cannot be reached or answers with an error."""


class StakeError(Exception):
    """The stake could not be paid (refused by the network, or the transfer failed)."""


@dataclass(frozen=True)
class Pending:
    """A stake transaction sent (or about to be)."""

    txid: str
    expiration_ms: int


def _load(state_dir: Path) -> Pending | None:
    path = state_dir / STAKE_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Pending(str(data["txid"]), int(data["expiration_ms"]))


def _save(state_dir: Path, pending: Pending) -> None:
    path = state_dir / STAKE_FILE
    path.write_text(json.dumps({"txid": pending.txid, "expiration_ms": pending.expiration_ms}))


class StakePayer:
    """Pays and follows one node's stake."""

    def __init__(self, settings: Settings, keys: AgentKeys, state_dir: Path) -> None:
        self.settings = settings
        self.keys = keys
        self.state_dir = state_dir
        self.client = AsyncTron(AsyncHTTPProvider(settings.tron_endpoint, timeout=10.0))

    async def _ask(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.client.provider.make_request(path, body)
        return answer if isinstance(answer, dict) else {}

    async def _send(self, amount_micros: int) -> Pending:
        contract = await self.client.get_contract(self.settings.tron_usdt_contract)
        method = await contract.functions.transfer(self.settings.tron_stake_address, amount_micros)
        builder = method.with_owner(self.keys.address).fee_limit(self.settings.tron_fee_limit_sun)
        txn = await builder.expiration(TX_LIFETIME_MS).build()
        txn.sign(self.keys.tron)
        signed = txn.to_json()
        pending = Pending(str(txn.txid), int(signed["raw_data"]["expiration"]))
        _save(self.state_dir, pending)  # before it can be in the network
        answer = await self._ask("wallet/broadcasttransaction", signed)
        code = str(answer.get("code", ""))
        if answer.get("result") is not True and code != "DUP_TRANSACTION_ERROR":
            message = str(answer.get("message", ""))
            with contextlib.suppress(ValueError):
                message = bytes.fromhex(message).decode("utf-8", "replace")
            (self.state_dir / STAKE_FILE).unlink(missing_ok=True)
            raise StakeError(f"the network refused the stake transfer: {code} {message}")
        log.info(
            "stake %s: %d micro-USDT to %s",
            pending.txid,
            amount_micros,
            self.settings.tron_stake_address,
        )
        return pending

    async def pay(self, amount_micros: int, timeout_s: float = 900.0) -> str:
        """The txid of a solid stake transfer (paid now, or earlier by this node)."""
        deadline = time.monotonic() + timeout_s
        try:
            pending = _load(self.state_dir) or await self._send(amount_micros)
            while time.monotonic() < deadline:
                info = await self._ask(
                    "walletsolidity/gettransactioninfobyid", {"value": pending.txid}
                )
                if info:
                    result = str(info.get("receipt", {}).get("result", "SUCCESS"))
                    if result != "SUCCESS":
                        (self.state_dir / STAKE_FILE).unlink(missing_ok=True)
                        raise StakeError(f"the stake transfer {pending.txid} failed: {result}")
                    return pending.txid
                expired = time.time() > pending.expiration_ms / 1000 + EXPIRY_MARGIN_S
                if expired and not await self._ask(
                    "wallet/gettransactionbyid", {"value": pending.txid}
                ):
                    log.warning("stake %s expired unseen; paying again", pending.txid)
                    pending = await self._send(amount_micros)
                await asyncio.sleep(POLL_S)
        except NETWORK_ERRORS as exc:
            raise StakeError(f"the TRON network at {self.settings.tron_endpoint}: {exc}") from exc
        raise StakeError(f"the stake transfer {pending.txid} is not solid after {timeout_s:.0f} s")

    async def close(self) -> None:
        await self.client.close()

"""Node registration stakes (spec 05 §4 "Stake: verify stake_txid through cluster 07"):
is a TRON transaction a confirmed USDT-TRC20 payment of a node's stake?

A stake is verified when the transaction is in a solid (irreversible) block, its
receipt says SUCCESS, and its log holds ``Transfer`` events of the configured USDT
contract from the node's address to the configured stake (escrow) address moving
at least the declared amount. Everything is read from the TRON network
(``gettransactioninfobyid``, its ``walletsolidity`` form); nothing is stored, so the
nodes cluster keeps which node a stake backs.
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid.payments.network import NetworkError, Receipt, TronNetwork
from lucid.runtime.errors import ErrorCode, LucidError

RETRY_AFTER_S = 5.0
"""When to ask again about a stake that is not solid yet (TRON: 19 blocks of 3 s, about 57 s;
a caller polls)."""


@dataclass(frozen=True)
class VerifiedStake:
    """A stake transfer that passed every check."""

    tx_id: str
    from_address: str
    stake_address: str
    amount_micros: int
    block_number: int
    block_time_ms: int


def _invalid(tx_id: str, why: str) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_STAKE_INVALID, f"stake transaction {tx_id}: {why}")


class Stakes:
    """Verifies stakes against the network, the USDT contract and the stake address."""

    def __init__(self, network: TronNetwork, stake_address: str) -> None:
        self.network = network
        self.stake_address = stake_address

    async def _solid_receipt(self, tx_id: str) -> Receipt:
        try:
            solid = await self.network.receipt(tx_id, solid=True)
            if solid is not None:
                return solid
            mined = await self.network.receipt(tx_id)
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        state = "is not in a solid block yet" if mined else "is unknown to the TRON network"
        raise LucidError(
            ErrorCode.ERROR_CODE_STAKE_UNCONFIRMED,
            f"stake transaction {tx_id} {state}; ask again once it is confirmed",
            retry_after_s=RETRY_AFTER_S,
        )

    async def verify(self, tx_id: str, node_address: str, min_amount_micros: int) -> VerifiedStake:
        """The stake paid by ``tx_id``, or the refusal of spec 07's error table."""
        receipt = await self._solid_receipt(tx_id)
        if receipt.result != "SUCCESS":
            raise _invalid(tx_id, f"it failed on the network ({receipt.result})")
        usdt = [e for e in receipt.events if e.contract == self.network.usdt_contract]
        if not usdt:
            raise _invalid(tx_id, "it is not a USDT-TRC20 transfer")
        to_stake = [e for e in usdt if e.recipient == self.stake_address]
        if not to_stake:
            raise _invalid(tx_id, f"it does not pay the stake address {self.stake_address}")
        paid = sum(e.amount for e in to_stake if e.sender == node_address)
        if not paid:
            raise LucidError(
                ErrorCode.ERROR_CODE_STAKE_NOT_OWNED,
                f"stake transaction {tx_id} was paid from another address than the node's",
            )
        if paid < min_amount_micros:
            raise _invalid(
                tx_id, f"it pays {paid} micro-USDT, less than the declared {min_amount_micros}"
            )
        return VerifiedStake(
            tx_id=tx_id,
            from_address=node_address,
            stake_address=self.stake_address,
            amount_micros=paid,
            block_number=receipt.block_number,
            block_time_ms=receipt.block_time_ms,
        )

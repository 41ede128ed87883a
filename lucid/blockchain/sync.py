"""Catch-up: a lagging or restarted validator pulls final blocks from its peers.

Every ``sync_interval_s`` (and at once when a vote or a commit shows it is behind)
the validator asks each peer for final blocks above its tip (``SyncBlocks``) and
appends them one by one, each checked like any block — link, hash, proposer
signature, Merkle root, every transaction, leader of its round, approvals of two
thirds of one round — before it is accepted. A peer that sends a bad block is left
for this pass; the next peer is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lucid.blockchain.v1 import blockchain_pb2 as pb

from lucid.blockchain.consensus import Engine
from lucid.blockchain.ledger import Ledger
from lucid.blockchain.peers import PeerClient, Peers

log = logging.getLogger("lucid.blockchain.sync")

MAX_SYNC_BYTES = 8 * 1024 * 1024
"""At most this much block data in one SyncBlocks answer."""


class Syncer:
    """Keeps this validator's chain up with its peers'."""

    def __init__(self, engine: Engine, ledger: Ledger, peers: Peers, interval_s: float) -> None:
        self.engine = engine
        self.ledger = ledger
        self.peers = peers
        self.interval_s = interval_s
        self._nudge = asyncio.Event()
        self.syncing = False

    def nudge(self) -> None:
        """Asks for a sync pass now."""
        self._nudge.set()

    async def run(self) -> None:
        """Syncs forever."""
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a sync pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), timeout=self.interval_s)
            self._nudge.clear()

    async def sync_once(self) -> int:
        """One pass over the peers; how many blocks were appended."""
        if not self.peers.clients:
            return 0
        appended = 0
        answers = await asyncio.gather(
            *(client.sync(self.ledger.tip.height + 1) for client in self.peers.clients)
        )
        ordered = sorted(
            zip(self.peers.clients, answers, strict=True),
            key=lambda pair: -(pair[1].final_height if pair[1] is not None else -1),
        )
        for client, answer in ordered:
            if answer is None or not answer.blocks:
                continue
            self.syncing = True
            try:
                appended += await self._pull(client, list(answer.blocks), answer.has_more)
            finally:
                self.syncing = False
        return appended

    async def _pull(self, client: PeerClient, first: list[pb.Block], has_more: bool) -> int:
        appended = 0
        batch = first
        while True:
            for block in batch:
                if block.header.height <= self.ledger.tip.height:
                    continue
                ok, reason = await self.engine.commit_final(block)
                if not ok:
                    log.warning(
                        "refused a synced block",
                        extra={
                            "peer": client.validator_id,
                            "height": block.header.height,
                            "reason": reason,
                        },
                    )
                    return appended
                appended += 1
            if not has_more:
                return appended
            answer = await client.sync(self.ledger.tip.height + 1)
            if answer is None or not answer.blocks:
                return appended
            batch, has_more = list(answer.blocks), answer.has_more

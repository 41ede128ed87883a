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
from dataclasses import dataclass

from lucid.blockchain.consensus import Engine
from lucid.blockchain.ledger import Ledger
from lucid.blockchain.peers import PeerClient, Peers
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.runtime.errors import invalid_argument

log = logging.getLogger("lucid.blockchain.sync")

MAX_SYNC_BYTES = 8 * 1024 * 1024
"""At most this much block data in one SyncBlocks answer."""


RECHECK_MAX = 10_000
"""At most this many held blocks are compared with a peer's in one resync."""


@dataclass(frozen=True)
class Resync:
    """What an operator's resync did."""

    started: bool
    appended: int
    rechecked: int
    diverged_height: int
    """The first held height a peer has with another hash; -1 for none."""
    message: str


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

    async def resync(self, from_height: int | None) -> Resync:
        """An operator's resync: compares held blocks from ``from_height`` (at most the
        tip + 1) with the reachable peers' (a divergence is reported, never rewritten:
        final blocks are final), then pulls what is missing above the tip."""
        tip = self.ledger.tip.height
        start = tip + 1 if from_height is None else from_height
        if start > tip + 1:
            raise invalid_argument("from_height", f"at most the tip + 1 ({tip + 1})")
        if not self.peers.clients:
            return Resync(False, 0, 0, -1, "this validator has no peers to resync from")
        rechecked, diverged, reached = await self._recheck(start, tip)
        if not reached:
            return Resync(False, 0, 0, -1, "no peer answered; nothing was resynchronised")
        appended = await self.sync_once()
        if diverged >= 0:
            message = f"a peer holds another block at height {diverged}; nothing was rewritten"
        else:
            message = f"{rechecked} held blocks match the peers; {appended} blocks pulled"
        return Resync(True, appended, rechecked, diverged, message)

    async def _recheck(self, start: int, tip: int) -> tuple[int, int, bool]:
        """(blocks compared, first diverging height or -1, whether any peer answered)."""
        last = min(tip, start + RECHECK_MAX - 1)
        rechecked, diverged, reached = 0, -1, False
        for client in self.peers.clients:
            height = start
            while True:  # one call at least: whether the peer answers at all
                answer = await client.sync(height)
                if answer is None:
                    break
                reached = True
                if not answer.blocks:
                    break
                for block in answer.blocks:
                    at = block.header.height
                    if at > last:
                        height = at
                        break
                    held = await self.ledger.repo.block_doc(height=at)
                    rechecked += 1
                    if held is not None and held["hash"] != block.hash and diverged < 0:
                        diverged = at
                    height = at + 1
                if not answer.has_more or height > last:
                    break
            if reached:
                break  # one peer's answer is enough: every peer's final blocks are the same
        return rechecked, diverged, reached

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

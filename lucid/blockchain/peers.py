"""Channels to the other validators of the static peer list, and what they last said.

Every validator presents the blockchain cluster's mTLS certificate; a peer's channel
checks the server is ``blockchain.lucid.internal``. Calls carry short deadlines and
are never retried by the channel (the consensus decides what to resend), and a
restarted peer is reconnected within a couple of seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from lucid.blockchain.config import ChainConfig, Peer
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.blockchain.v1 import consensus_pb2_grpc as cgrpc
from lucid.runtime import tls
from lucid.runtime.config import Settings

log = logging.getLogger("lucid.blockchain.peers")
T = TypeVar("T")


@dataclass
class PeerState:
    """What this validator knows of a peer."""

    peer: Peer
    connected: bool = False
    last_seen: float = 0.0
    """Wall-clock time of its last answer."""
    height: int = -1
    """The final height it last reported."""
    failures: int = field(default=0)


class PeerClient:
    """One peer's channel and stub."""

    def __init__(self, settings: Settings, peer: Peer, timeout_s: float) -> None:
        self.state = PeerState(peer)
        self.timeout_s = timeout_s
        credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, "blockchain"))
        limit = settings.max_request_bytes + 1024 * 1024
        self.channel = grpc.aio.secure_channel(
            peer.target,
            credentials,
            options=[
                ("grpc.ssl_target_name_override", tls.dns_name("blockchain")),
                ("grpc.enable_retries", 0),
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
                ("grpc.keepalive_time_ms", 30_000),
            ],
        )
        self.stub = cgrpc.ConsensusServiceStub(self.channel)

    @property
    def validator_id(self) -> str:
        """The peer's id."""
        return self.state.peer.validator_id

    async def call(
        self, method: Callable[..., Awaitable[T]], request: Any, timeout_s: float | None = None
    ) -> T | None:
        """Calls a peer rpc; ``None`` when the peer does not answer."""
        try:
            response = await method(request, timeout=timeout_s or self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.state.connected = False
            self.state.failures += 1
            log.debug(
                "peer call failed", extra={"peer": self.validator_id, "code": exc.code().name}
            )
            return None
        self.state.connected = True
        self.state.failures = 0
        self.state.last_seen = time.time()
        height = getattr(response, "height", None)
        if height is None:
            height = getattr(response, "final_height", None)
        if isinstance(height, int):
            self.state.height = max(self.state.height, height)
        return response

    async def propose(
        self, request: cpb.ProposeBlockRequest, timeout_s: float | None = None
    ) -> cpb.ProposeBlockResponse | None:
        """ProposeBlock (``timeout_s``: as long as the leader waits for the votes)."""
        return await self.call(self.stub.ProposeBlock, request, timeout_s)

    async def approve(
        self, request: cpb.ApproveBlockRequest, timeout_s: float | None = None
    ) -> cpb.ApproveBlockResponse | None:
        """ApproveBlock (``timeout_s``: as long as the leader waits for the votes)."""
        return await self.call(self.stub.ApproveBlock, request, timeout_s)

    async def commit(self, block: pb.Block) -> cpb.CommitBlockResponse | None:
        """CommitBlock."""
        return await self.call(self.stub.CommitBlock, cpb.CommitBlockRequest(block=block))

    async def sync(self, from_height: int, max_blocks: int = 100) -> cpb.SyncBlocksResponse | None:
        """SyncBlocks."""
        return await self.call(
            self.stub.SyncBlocks,
            cpb.SyncBlocksRequest(from_height=from_height, max_blocks=max_blocks),
            timeout_s=max(self.timeout_s, 10.0),
        )

    async def relay(
        self, transactions: list[pb.SignedTransaction], validator_id: str
    ) -> cpb.RelayTransactionsResponse | None:
        """RelayTransactions."""
        return await self.call(
            self.stub.RelayTransactions,
            cpb.RelayTransactionsRequest(transactions=transactions, validator_id=validator_id),
        )

    async def close(self) -> None:
        """Closes the channel."""
        await self.channel.close()


class Peers:
    """The clients of every peer, and background sends that must outlive their caller."""

    def __init__(self, settings: Settings, config: ChainConfig) -> None:
        self.config = config
        self.clients = [PeerClient(settings, p, config.peer_timeout_s) for p in config.peers]
        self._background: set[asyncio.Task[Any]] = set()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.clients)

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
        """Runs a send in the background, keeping a reference until it ends."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """Keeps a reference to a running task until it ends."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def broadcast_commit(self, block: pb.Block) -> None:
        """Sends a final block to every peer (best effort; laggards sync)."""
        for client in self.clients:
            self.spawn(client.commit(block))

    def relay(self, transactions: list[pb.SignedTransaction]) -> None:
        """Passes accepted transactions to every peer (best effort)."""
        for client in self.clients:
            for start in range(0, len(transactions), 100):
                self.spawn(
                    client.relay(transactions[start : start + 100], self.config.validator_id)
                )

    @property
    def network_height(self) -> int:
        """The highest final height a peer reported."""
        return max((c.state.height for c in self.clients), default=-1)

    def connected_count(self, within_s: float = 10.0) -> int:
        """How many peers answered recently."""
        now = time.time()
        return sum(
            1 for c in self.clients if c.state.connected and now - c.state.last_seen < within_s
        )

    async def close(self) -> None:
        """Cancels background sends and closes every channel."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for client in self.clients:
            await client.close()

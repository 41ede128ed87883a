"""Cluster 02, blockchain core (lucid_blocks): wiring of one validator's server.

The chain: blocks, transactions, session anchoring, PoOT consensus between validator
processes (``lucid serve blockchain --validator N``), Merkle trees. It never touches
TRON. Owns the proto package ``lucid.blockchain.v1``, the collections prefixed
``chain_v<N>_`` (one set per validator) and the Redis prefix ``lucid:blockchain:``.
"""

from __future__ import annotations

from lucid.blockchain import schema
from lucid.blockchain.anchoring import Anchoring
from lucid.blockchain.config import ChainConfig
from lucid.blockchain.keys import KeyDirectory
from lucid.blockchain.node import ChainNode
from lucid.blockchain.reads import ChainReads
from lucid.blockchain.servicers.anchoring import AnchoringServicer
from lucid.blockchain.servicers.chain import BlockchainServicer
from lucid.blockchain.servicers.consensus import ConsensusServicer
from lucid.blockchain.servicers.merkle import MerkleServicer
from lucid.blockchain.trees import Trees
from lucid.blockchain.v1 import (
    anchoring_pb2_grpc,
    blockchain_pb2_grpc,
    consensus_pb2_grpc,
    merkle_pb2_grpc,
)
from lucid.lib.sealing import Sealer
from lucid.runtime.server import ClusterApp, Runtime


def chain_node(runtime: Runtime, config: ChainConfig | None = None) -> ChainNode:
    """The validator of this runtime (its key is made and published now)."""
    config = config or ChainConfig.of(runtime.settings)
    keys = KeyDirectory(config.keys_dir, Sealer(runtime.settings.sealing_passphrase()))
    key = keys.load_or_create(config.validator_id)
    return ChainNode(
        runtime.settings,
        config,
        db=runtime.datastores.db,
        key=key,
        keys=keys,
        clock=runtime.clock,
    )


async def build(runtime: Runtime, config: ChainConfig | None = None) -> ClusterApp:
    """The blockchain server of validator ``settings.validator_index``."""
    node = chain_node(runtime, config)
    reads = ChainReads(node)

    async def start() -> None:
        node.start()

    def height() -> float:
        return float(node.ready.ledger.tip.height) if node.ready is not None else -1.0

    def finality_lag() -> float:
        if node.ready is None:
            return -1.0
        now_ns = int(runtime.clock.now().timestamp() * 1e9)
        return max(0.0, (now_ns - node.ready.ledger.tip.time_ns) / 1e9)

    runtime.metrics.gauge("chain_height", "Height of the last final block (-1: not ready).", height)
    runtime.metrics.gauge(
        "chain_finality_lag_seconds",
        "Seconds since the block time of the last final block (-1: not ready).",
        finality_lag,
    )

    return ClusterApp(
        servicers=[
            (
                blockchain_pb2_grpc.add_BlockchainServiceServicer_to_server,
                BlockchainServicer(node, reads),
            ),
            (
                anchoring_pb2_grpc.add_AnchoringServiceServicer_to_server,
                AnchoringServicer(Anchoring(node)),
            ),
            (
                consensus_pb2_grpc.add_ConsensusServiceServicer_to_server,
                ConsensusServicer(node, reads),
            ),
            (
                merkle_pb2_grpc.add_MerkleServiceServicer_to_server,
                MerkleServicer(Trees(node.repo, node.clock)),
            ),
        ],
        collections=schema.collections(node.config.collection_prefix),
        on_ready=[start],
        on_stop=[node.stop],
    )

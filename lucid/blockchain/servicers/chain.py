"""BlockchainService: chain information, blocks and transactions (gRPC adapter)."""

from __future__ import annotations

import importlib.metadata
import uuid
from typing import Any

from lucid.blockchain import convert, trust
from lucid.blockchain.config import CONSENSUS_ALGORITHM, NETWORK_NAME
from lucid.blockchain.node import ChainNode
from lucid.blockchain.reads import CHECKS, ChainReads
from lucid.blockchain.store.chain import doc_to_transaction
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import blockchain_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.errors import LucidError, not_found, reason_of
from lucid.runtime.wire import duration

try:
    VERSION = importlib.metadata.version("lucid")
except importlib.metadata.PackageNotFoundError:
    VERSION = "0.0.0"


class BlockchainServicer(blockchain_pb2_grpc.BlockchainServiceServicer):
    """The chain as one validator holds it."""

    def __init__(self, node: ChainNode, reads: ChainReads) -> None:
        self.node = node
        self.reads = reads

    async def GetChainInfo(
        self, request: pb.GetChainInfoRequest, context: Any
    ) -> pb.GetChainInfoResponse:
        ready = self.node.require()
        ledger = ready.ledger
        genesis_doc = await self.reads.genesis_doc()
        return pb.GetChainInfoResponse(
            network_name=NETWORK_NAME,
            version=VERSION,
            consensus_algorithm=CONSENSUS_ALGORITHM,
            block_interval=duration(self.node.config.block_interval_s),
            current_height=ledger.tip.height,
            final_height=ledger.tip.height,
            genesis_block=convert.summary(genesis_doc, ledger.tip.height),
            latest_block_hash=ledger.tip.hash,
            validator_count=len(ready.validators),
            hash_algorithm=pb.HASH_ALGORITHM_SHA256,
        )

    async def GetTrustAnchor(
        self, request: pb.GetTrustAnchorRequest, context: Any
    ) -> pb.GetTrustAnchorResponse:
        return trust.response(trust.trust_anchor(self.node.require().validators))

    async def GetChainStatus(
        self, request: pb.GetChainStatusRequest, context: Any
    ) -> pb.GetChainStatusResponse:
        node = self.node
        response = pb.GetChainStatusResponse(
            validator_id=node.validator_id,
            validator_count=node.config.validators,
            connected_peers=node.peers.connected_count(),
            network_height=node.peers.network_height,
        )
        if node.ready is None:
            response.status = pb.CHAIN_STATUS_ERROR if node.error else pb.CHAIN_STATUS_SYNCING
            response.message = node.error or "waiting for the validator set"
            return response
        ledger = node.ready.ledger
        response.current_height = response.final_height = ledger.tip.height
        response.network_height = max(response.network_height, ledger.tip.height)
        response.latest_block_time.FromNanoseconds(ledger.tip.time_ns)
        response.pending_transactions = await self.reads.pending_count()
        if node.ready.syncer.syncing or response.network_height > ledger.tip.height:
            response.status = pb.CHAIN_STATUS_SYNCING
            response.message = f"behind peers at {response.network_height}; catching up"
        else:
            response.status = pb.CHAIN_STATUS_HEALTHY
        return response

    async def ResyncChain(
        self, request: pb.ResyncChainRequest, context: Any
    ) -> pb.ResyncChainResponse:
        ready = self.node.require()
        done = await ready.syncer.resync(
            request.from_height if request.HasField("from_height") else None
        )
        return pb.ResyncChainResponse(
            started=done.started,
            appended_count=done.appended,
            rechecked_count=done.rechecked,
            diverged_height=done.diverged_height,
            local_height=ready.ledger.tip.height,
            network_height=max(self.node.peers.network_height, ready.ledger.tip.height),
            message=done.message,
        )

    async def GetChainHeight(
        self, request: pb.GetChainHeightRequest, context: Any
    ) -> pb.GetChainHeightResponse:
        tip = self.node.require().ledger.tip
        return pb.GetChainHeightResponse(height=tip.height, hash=tip.hash, final_height=tip.height)

    async def GetNetworkInfo(
        self, request: pb.GetNetworkInfoRequest, context: Any
    ) -> pb.GetNetworkInfoResponse:
        ready = self.node.require()
        peers = []
        for client in self.node.peers:
            state = client.state
            info = pb.PeerInfo(
                validator_id=state.peer.validator_id,
                endpoint=state.peer.target,
                public_key=ready.validators.key_of(state.peer.validator_id) or "",
                connected=state.connected,
                height=max(state.height, 0),
            )
            if state.last_seen:
                info.last_seen_time.FromNanoseconds(int(state.last_seen * 1e9))
            peers.append(info)
        return pb.GetNetworkInfoResponse(
            network_name=NETWORK_NAME,
            validator_id=self.node.validator_id,
            peers=peers,
            participant_count=len(ready.validators),
            required_approvals=ready.validators.required_approvals,
        )

    async def ListBlocks(
        self, request: pb.ListBlocksRequest, context: Any
    ) -> pb.ListBlocksResponse:
        ledger = self.node.require().ledger
        tip = ledger.tip.height
        low, high = request.height_from, request.height_to or tip
        descending = request.order != pb.BLOCK_ORDER_HEIGHT_ASC
        page = paging.page(request, default=20)
        if request.status not in (pb.BLOCK_STATUS_UNSPECIFIED, pb.BLOCK_STATUS_CONFIRMED):
            return pb.ListBlocksResponse()  # only final blocks are stored
        docs, total = await self.reads.blocks_page(
            low, high, descending=descending, offset=page.offset, limit=page.size
        )
        return pb.ListBlocksResponse(
            blocks=[convert.summary(d, tip) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def GetBlock(self, request: pb.GetBlockRequest, context: Any) -> pb.GetBlockResponse:
        ledger = self.node.require().ledger
        if request.hash:
            block = await ledger.block(
                block_hash=request.hash, with_transactions=request.include_transactions
            )
        elif request.HasField("height"):
            block = await ledger.block(
                height=request.height, with_transactions=request.include_transactions
            )
        else:
            block = await ledger.block(
                height=ledger.tip.height, with_transactions=request.include_transactions
            )
        if block is None:
            raise not_found("block")
        return pb.GetBlockResponse(block=block)

    async def ValidateBlock(
        self, request: pb.ValidateBlockRequest, context: Any
    ) -> pb.ValidateBlockResponse:
        asked = {name for name in CHECKS if getattr(request, f"validate_{name}")}
        found = await self.reads.validate_block(request.block, asked)
        response = pb.ValidateBlockResponse(valid=True)
        for name in CHECKS:
            errors = found.get(name)
            if errors is None:
                response.skipped_checks.append(name)
                continue
            setattr(response, f"{name}_valid", not errors)
            response.errors.extend(f"{name}: {e}" for e in errors)
            response.valid = response.valid and not errors
        return response

    async def SubmitTransaction(
        self, request: pb.SubmitTransactionRequest, context: Any
    ) -> pb.SubmitTransactionResponse:
        ledger = self.node.require().ledger
        doc, _ = await ledger.accept(request.transaction)
        tx = doc_to_transaction(doc, tip_height=ledger.tip.height)
        return pb.SubmitTransactionResponse(tx_hash=tx.tx_hash, status=tx.status, transaction=tx)

    async def SubmitTransactionBatch(
        self, request: pb.SubmitTransactionBatchRequest, context: Any
    ) -> pb.SubmitTransactionBatchResponse:
        ledger = self.node.require().ledger
        response = pb.SubmitTransactionBatchResponse(batch_id=str(uuid.uuid4()))
        for index, signed in enumerate(request.transactions):
            result = pb.BatchItemResult(index=index)
            try:
                doc, _ = await ledger.accept(signed)
            except LucidError as exc:
                result.error_code = reason_of(exc.code)
                result.error_message = exc.message
                response.failed_count += 1
            else:
                result.tx_hash = doc["tx_hash"]
                result.accepted = True
                response.submitted_count += 1
            response.results.append(result)
        return response

    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: Any
    ) -> pb.GetTransactionResponse:
        tx, proof = await self.reads.transaction(request.tx_hash, with_proof=request.include_proof)
        response = pb.GetTransactionResponse(transaction=tx)
        if proof is not None:
            response.inclusion_proof.CopyFrom(proof)
        return response

    async def ListPendingTransactions(
        self, request: pb.ListPendingTransactionsRequest, context: Any
    ) -> pb.ListPendingTransactionsResponse:
        page = paging.page(request)
        docs, total = await self.reads.pending_page(
            request.type, offset=page.offset, limit=page.size
        )
        return pb.ListPendingTransactionsResponse(
            transactions=[doc_to_transaction(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

"""BlockchainService: chain information, blocks and transactions (gRPC adapter)."""

from __future__ import annotations

import importlib.metadata
import uuid
from typing import Any

from lucid.blockchain import blocks, genesis, trust
from lucid.blockchain.blocks import Tip
from lucid.blockchain.config import CONSENSUS_ALGORITHM, NETWORK_NAME
from lucid.blockchain.node import ChainNode
from lucid.blockchain.repository import Doc, doc_to_block, doc_to_transaction
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import blockchain_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.errors import LucidError, not_found, reason_of
from lucid.runtime.wire import duration

try:
    VERSION = importlib.metadata.version("lucid")
except importlib.metadata.PackageNotFoundError:
    VERSION = "0.0.0"


def summary(doc: Doc, tip_height: int) -> pb.BlockSummary:
    """A stored block as a list entry."""
    result = pb.BlockSummary(
        height=int(doc["height"]),
        hash=doc["hash"],
        previous_hash=doc["previous_hash"],
        merkle_root=doc["merkle_root"],
        proposer_id=doc["proposer_id"],
        transaction_count=int(doc["transaction_count"]),
        status=pb.BLOCK_STATUS_CONFIRMED,
        approval_count=len(doc.get("approvals", [])),
        confirmations=tip_height - int(doc["height"]) + 1,
        final=True,
        size_bytes=int(doc.get("size_bytes", 0)),
    )
    result.block_time.seconds = int(doc["block_time_s"])
    result.block_time.nanos = int(doc["block_time_nanos"])
    return result


class BlockchainServicer(blockchain_pb2_grpc.BlockchainServiceServicer):
    """The chain as one validator holds it."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node

    async def GetChainInfo(
        self, request: pb.GetChainInfoRequest, context: Any
    ) -> pb.GetChainInfoResponse:
        ready = self.node.require()
        ledger = ready.ledger
        genesis_doc = await ledger.repo.block_doc(height=0)
        if genesis_doc is None:
            raise not_found("genesis block")
        return pb.GetChainInfoResponse(
            network_name=NETWORK_NAME,
            version=VERSION,
            consensus_algorithm=CONSENSUS_ALGORITHM,
            block_interval=duration(self.node.config.block_interval_s),
            current_height=ledger.tip.height,
            final_height=ledger.tip.height,
            genesis_block=summary(genesis_doc, ledger.tip.height),
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
        response.pending_transactions = await ledger.repo.count_pending()
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
        query = {"height": {"$gte": low, "$lte": high}}
        total = await ledger.repo.count_blocks(query)
        docs = await ledger.repo.block_docs(
            query, descending=descending, skip=page.offset, limit=page.size
        )
        return pb.ListBlocksResponse(
            blocks=[summary(d, tip) for d in docs],
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
        ready = self.node.require()
        block = request.block
        asked = {
            "hash": request.validate_hash,
            "signature": request.validate_signature,
            "merkle_root": request.validate_merkle_root,
            "transactions": request.validate_transactions,
            "link": request.validate_link,
            "approvals": request.validate_approvals,
        }
        if not any(asked.values()):
            asked = dict.fromkeys(asked, True)
        validators = ready.validators
        is_genesis = block.header.height == 0
        checks = {
            "hash": lambda: blocks.hash_errors(block),
            "signature": lambda: (
                blocks.proposer_errors(block, genesis.signer_set(block))
                if is_genesis
                else blocks.proposer_errors(block, validators)
            ),
            "merkle_root": lambda: (
                blocks.merkle_errors(block)
                + [
                    f"transaction {i} is {t.tx_hash}, not {h}"
                    for i, (t, h) in enumerate(
                        zip(block.transactions, block.tx_hashes, strict=False)
                    )
                    if t.tx_hash and t.tx_hash != h
                ]
            ),
            "transactions": lambda: blocks.check_transactions(
                block, validators, now=self.node.clock.now()
            )[1],
            "approvals": lambda: (
                genesis.check_genesis(block)
                if is_genesis
                else blocks.check_approvals(block, validators)
            ),
        }
        response = pb.ValidateBlockResponse(valid=True)
        for name, wanted in asked.items():
            if not wanted:
                response.skipped_checks.append(name)
                continue
            if name == "link":
                errors = await self._link_errors(block)
            else:
                errors = checks[name]()
            setattr(response, f"{name}_valid", not errors)
            response.errors.extend(f"{name}: {e}" for e in errors)
            response.valid = response.valid and not errors
        return response

    async def _link_errors(self, block: pb.Block) -> list[str]:
        if block.header.height == 0:
            return genesis.check_genesis(block)
        ledger = self.node.require().ledger
        parent = await ledger.repo.block_doc(height=block.header.height - 1)
        if parent is None:
            return [f"no stored block at height {block.header.height - 1} to link to"]
        parent_block = doc_to_block(parent)
        return blocks.link_errors(
            block,
            Tip(
                parent_block.header.height,
                parent_block.hash,
                blocks.time_ns(parent_block.header.block_time),
            ),
        )

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
        ledger = self.node.require().ledger
        doc = await ledger.repo.tx_doc(request.tx_hash)
        if doc is None:
            raise not_found("transaction")
        response = pb.GetTransactionResponse(
            transaction=doc_to_transaction(doc, tip_height=ledger.tip.height)
        )
        if request.include_proof and response.transaction.block_hash:
            block_doc = await ledger.repo.block_doc(height=response.transaction.block_height)
            if block_doc is not None:
                response.inclusion_proof.CopyFrom(
                    blocks.inclusion_proof(
                        block_doc["tx_hashes"], response.transaction.transaction_index
                    )
                )
        return response

    async def ListPendingTransactions(
        self, request: pb.ListPendingTransactionsRequest, context: Any
    ) -> pb.ListPendingTransactionsResponse:
        ledger = self.node.require().ledger
        page = paging.page(request)
        total = await ledger.repo.count_pending(tx_type=request.type)
        docs = await ledger.repo.pending_docs(
            tx_type=request.type, skip=page.offset, limit=page.size
        )
        return pb.ListPendingTransactionsResponse(
            transactions=[doc_to_transaction(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

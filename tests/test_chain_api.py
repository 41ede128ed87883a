"""The chain's rpcs over real gRPC and mTLS, on the in-process mesh's validator (one
validator: it alone is two thirds of one). Spec 02 §7 checks 1, 3, 5, 6, 7, 9, 10, 13."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import grpc
import nacl.signing
import pytest

from lucid.blockchain import anchors, poot
from lucid.blockchain.keys import public_key_hex, sign_hex, verify_signature
from lucid.blockchain.node import ChainNode
from lucid.blockchain.servicers.chain import BlockchainServicer
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.blockchain.v1 import merkle_pb2 as mpb
from lucid.blockchain.v1 import merkle_pb2_grpc
from lucid.blockchain.votes import vote_message
from lucid.common.v1 import access_pb2
from lucid.lib import canonical, merkle, pootvotes
from tests.chain_support import (
    ChainStubs,
    anchor_request,
    data_body,
    now_stamp,
    signed,
    validator_key,
    wait_for,
)
from tests.support import Mesh, bearer, details
from tests.waiting import eventually

MIB = 1024 * 1024


@pytest.fixture(scope="module")
async def chain(mesh: Mesh) -> Mesh:
    await mesh.start("blockchain")
    async with mesh.channel("blockchain") as channel:
        await wait_for(ChainStubs(channel).ready, timeout_s=60)
    return mesh


def chain_node(mesh: Mesh) -> ChainNode:
    """The in-process validator behind the mesh's blockchain server."""
    for _, servicer in mesh.servers["blockchain"].app.servicers:
        if isinstance(servicer, BlockchainServicer):
            return servicer.node
    raise AssertionError("no BlockchainServicer")


async def super_admin(mesh: Mesh) -> tuple[tuple[str, str]]:
    return bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))


async def confirmed(stubs: ChainStubs, tx_hash: str) -> pb.GetTransactionResponse:
    async def probe() -> pb.GetTransactionResponse | None:
        reply = await stubs.chain.GetTransaction(
            pb.GetTransactionRequest(tx_hash=tx_hash, include_proof=True)
        )
        return reply if reply.transaction.status == pb.TRANSACTION_STATUS_CONFIRMED else None

    return await wait_for(probe, timeout_s=30)


async def final_anchor(stubs: ChainStubs, session_id: str) -> apb.SessionAnchoring:
    async def probe() -> apb.SessionAnchoring | None:
        reply = await stubs.anchoring.GetSessionAnchoring(
            apb.GetSessionAnchoringRequest(session_id=session_id)
        )
        return reply.anchoring if reply.anchoring.final else None

    return await wait_for(probe, timeout_s=30)


# -- chain information and blocks ------------------------------------------------------------


async def test_a_fresh_chain_describes_itself(chain: Mesh) -> None:
    async with chain.channel("blockchain") as channel:  # public: no token
        stubs = ChainStubs(channel)
        info = await stubs.chain.GetChainInfo(pb.GetChainInfoRequest())
        status = await stubs.chain.GetChainStatus(pb.GetChainStatusRequest())
    assert info.network_name == "lucid_blocks"
    assert info.consensus_algorithm == "PoOT"
    assert info.genesis_block.height == 0
    assert info.genesis_block.previous_hash == "0" * 64
    assert info.hash_algorithm == pb.HASH_ALGORITHM_SHA256
    assert info.validator_count == 1 and info.final_height == info.current_height
    assert status.status == pb.CHAIN_STATUS_HEALTHY and status.validator_id == "validator-0"
    async with chain.channel("blockchain", "admin") as channel:
        stubs = ChainStubs(channel)
        genesis = (await stubs.chain.GetBlock(pb.GetBlockRequest(height=0), metadata=())).block
        network = await stubs.chain.GetNetworkInfo(pb.GetNetworkInfoRequest())
    assert genesis.hash == info.genesis_block.hash and genesis.header.height == 0
    assert network.participant_count == 1 and network.required_approvals == 1


async def test_a_transaction_enters_a_final_block_with_a_proof(chain: Mesh) -> None:
    token = await super_admin(chain)
    tx = signed(data_body())
    async with chain.channel("blockchain") as channel:
        stubs = ChainStubs(channel)
        reply = await stubs.chain.SubmitTransaction(
            pb.SubmitTransactionRequest(transaction=tx), metadata=token
        )
        assert reply.status == pb.TRANSACTION_STATUS_PENDING
        again = await stubs.chain.SubmitTransaction(
            pb.SubmitTransactionRequest(transaction=tx), metadata=token
        )
        assert again.tx_hash == reply.tx_hash  # the same signed transaction: the stored one
    async with chain.channel("blockchain", "admin") as channel:
        stubs = ChainStubs(channel)
        done = await confirmed(stubs, reply.tx_hash)
        proof = done.inclusion_proof
        assert merkle.verify_inclusion(
            bytes.fromhex(proof.leaf_hash),
            proof.leaf_index,
            proof.tree_size,
            [bytes.fromhex(p) for p in proof.audit_path],
            bytes.fromhex(proof.root_hash),
        )
        assert proof.leaf_hash == merkle.leaf_hash(bytes.fromhex(reply.tx_hash)).hex()
        block = (
            await stubs.chain.GetBlock(
                pb.GetBlockRequest(height=done.transaction.block_height, include_transactions=True)
            )
        ).block
        assert block.header.merkle_root == proof.root_hash
        assert [t.tx_hash for t in block.transactions] == list(block.tx_hashes)
        assert reply.tx_hash in block.tx_hashes and block.final and len(block.approvals) == 1
        by_hash = (await stubs.chain.GetBlock(pb.GetBlockRequest(hash=block.hash))).block
        assert by_hash.header == block.header and not by_hash.transactions
        latest = (await stubs.chain.GetBlock(pb.GetBlockRequest())).block
        assert latest.header.height >= block.header.height
        assert latest.confirmations == 1


async def test_block_lists_page_and_refuse_bad_requests(chain: Mesh) -> None:
    async with chain.channel("blockchain", "admin") as channel:
        stubs = ChainStubs(channel)
        first = await stubs.chain.ListBlocks(pb.ListBlocksRequest(page_size=1))
        assert len(first.blocks) == 1 and first.total_size >= 2 and first.next_page_token
        second = await stubs.chain.ListBlocks(
            pb.ListBlocksRequest(page_size=1, page_token=first.next_page_token)
        )
        assert second.blocks[0].height == first.blocks[0].height - 1  # newest first
        ascending = await stubs.chain.ListBlocks(
            pb.ListBlocksRequest(order=pb.BLOCK_ORDER_HEIGHT_ASC, height_to=1)
        )
        assert [b.height for b in ascending.blocks] == [0, 1]
        with pytest.raises(grpc.aio.AioRpcError) as too_many:
            await stubs.chain.ListBlocks(pb.ListBlocksRequest(page_size=101))
        assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as foreign_token:
            await stubs.chain.ListBlocks(
                pb.ListBlocksRequest(
                    order=pb.BLOCK_ORDER_HEIGHT_ASC, page_token=first.next_page_token
                )
            )
        assert details(foreign_token.value).reason == "LUCID_ERR_1005"
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stubs.chain.GetBlock(pb.GetBlockRequest(hash="ab" * 32))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as beyond:
            await stubs.chain.GetBlock(pb.GetBlockRequest(height=10**9))
        assert details(beyond.value).reason == "LUCID_ERR_4001"


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: _with(data_body(), fee_micros=1_000_010_000), "LUCID_ERR_1001"),
        (lambda: data_body(description="to TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"), "LUCID_ERR_4102"),
        (lambda: _system("payout.send"), "LUCID_ERR_4102"),
        (lambda: _system("note.big", blob="x" * (MIB + 10)), "LUCID_ERR_4101"),
        (
            lambda: pb.TransactionBody(
                type=pb.TRANSACTION_TYPE_SESSION_ANCHOR,
                session_anchor=pb.SessionAnchorPayload(session_id=str(uuid.uuid4())),
                create_time=now_stamp(),
            ),
            "LUCID_ERR_1001",
        ),
    ],
    ids=["fee-1000.01", "tron-address", "payout", "over-1-MiB", "anchor-without-root"],
)
async def test_bad_transactions_are_refused_and_change_nothing(
    chain: Mesh, build: object, reason: str
) -> None:
    token = await super_admin(chain)
    tx = signed(build())  # type: ignore[operator]
    async with chain.channel("blockchain") as channel:
        stubs = ChainStubs(channel)
        before = await _pending(chain)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs.chain.SubmitTransaction(
                pb.SubmitTransactionRequest(transaction=tx), metadata=token
            )
        assert details(refused.value).reason == reason
        assert await _pending(chain) == before


async def test_signatures_and_signers_are_checked(chain: Mesh) -> None:
    token = await super_admin(chain)
    async with chain.channel("blockchain") as channel:
        stubs = ChainStubs(channel)
        short = signed(data_body())
        short.signature = "ab" * 32  # 64 hex: under the 128 an Ed25519 signature has
        forged = signed(data_body())
        forged.signature = signed(data_body()).signature
        anchor = pb.TransactionBody(
            type=pb.TRANSACTION_TYPE_SESSION_ANCHOR,
            session_anchor=signed_anchor_payload(),
            create_time=now_stamp(),
        )
        for tx, reason in (
            (short, "LUCID_ERR_1001"),
            (forged, "LUCID_ERR_4101"),
            (signed(anchor), "LUCID_ERR_4003"),  # anchors come through AnchorSession
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stubs.chain.SubmitTransaction(
                    pb.SubmitTransactionRequest(transaction=tx), metadata=token
                )
            assert details(refused.value).reason == reason
        user = bearer(await chain.token())
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stubs.chain.SubmitTransaction(
                pb.SubmitTransactionRequest(transaction=signed(data_body())), metadata=user
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_batches_hold_1_to_100_and_report_each(chain: Mesh) -> None:
    token = await super_admin(chain)
    async with chain.channel("blockchain") as channel:
        stubs = ChainStubs(channel)
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await stubs.chain.SubmitTransactionBatch(
                pb.SubmitTransactionBatchRequest(
                    transactions=[signed(data_body()) for _ in range(101)]
                ),
                metadata=token,
            )
        assert too_big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad = signed(data_body())
        bad.signature = signed(data_body()).signature
        reply = await stubs.chain.SubmitTransactionBatch(
            pb.SubmitTransactionBatchRequest(
                transactions=[signed(data_body()), bad, signed(data_body())]
            ),
            metadata=token,
        )
    assert (reply.submitted_count, reply.failed_count) == (2, 1)
    assert [r.accepted for r in reply.results] == [True, False, True]
    assert reply.results[1].error_code == "LUCID_ERR_4101"
    assert uuid.UUID(reply.batch_id).version == 4


async def test_no_pending_transaction_means_no_new_block(chain: Mesh) -> None:
    async with chain.channel("blockchain", "admin") as channel:
        stubs = ChainStubs(channel)

        async def drained() -> bool:
            pending = await stubs.chain.ListPendingTransactions(pb.ListPendingTransactionsRequest())
            return pending.total_size == 0

        await wait_for(drained, timeout_s=30)
        height = await stubs.height()
        # The validator (alone: the leader of every round) sees three rounds of the next
        # height go by with nothing worth a block pending.
        ledger = chain_node(chain).require().ledger
        rounds: set[int] = set()

        def quiet_rounds() -> bool:
            if ledger.tip.height == height:
                rounds.add(ledger.round_at())
            return len(rounds - {-1}) >= 3

        await eventually(quiet_rounds, timeout_s=30, what="three rounds of the next height")
        schedule = await ledger.schedule()
        assert all(schedule.leader(r) == "validator-0" for r in rounds - {-1})
        after = await stubs.height()
        # Other clusters of the shared mesh may anchor meanwhile; a block must then hold
        # a transaction that was worth it (not only uptime beacons). None is empty.
        if after == height:
            pending = await stubs.chain.ListPendingTransactions(pb.ListPendingTransactionsRequest())
            assert all(_is_beacon(t) for t in pending.transactions), pending
        for new in range(height + 1, after + 1):
            block = (
                await stubs.chain.GetBlock(
                    pb.GetBlockRequest(height=new, include_transactions=True)
                )
            ).block
            assert any(not _is_beacon(t) for t in block.transactions), block
        height = await stubs.height()
        token = await super_admin(chain)
        async with chain.channel("blockchain") as operator:
            reply = await ChainStubs(operator).chain.SubmitTransaction(
                pb.SubmitTransactionRequest(transaction=signed(data_body())), metadata=token
            )
        done = await confirmed(stubs, reply.tx_hash)
        assert done.transaction.block_height > height


async def test_validate_block_names_the_broken_check(chain: Mesh) -> None:
    async with chain.channel("blockchain", "admin") as channel:
        stubs = ChainStubs(channel)
        latest = (await stubs.chain.GetBlock(pb.GetBlockRequest(include_transactions=True))).block
        sound = await stubs.chain.ValidateBlock(pb.ValidateBlockRequest(block=latest))
        assert sound.valid, sound.errors
        assert sound.hash_valid and sound.signature_valid and sound.approvals_valid
        genesis = (
            await stubs.chain.GetBlock(pb.GetBlockRequest(height=0, include_transactions=True))
        ).block
        assert (await stubs.chain.ValidateBlock(pb.ValidateBlockRequest(block=genesis))).valid

        tampered = pb.Block()
        tampered.CopyFrom(latest)
        tampered.tx_hashes.append("ab" * 32)
        tampered.header.transaction_count += 1
        reply = await stubs.chain.ValidateBlock(
            pb.ValidateBlockRequest(block=tampered, validate_merkle_root=True, validate_hash=True)
        )
        assert not reply.valid and not reply.merkle_root_valid and not reply.hash_valid
        assert set(reply.skipped_checks) == {"signature", "transactions", "link", "approvals"}

        stranger = nacl.signing.SigningKey.generate()
        foreign = pb.Block()
        foreign.CopyFrom(latest)
        foreign.proposer_public_key = public_key_hex(stranger)
        foreign.proposer_signature = sign_hex(stranger, canonical.proposal_message(latest.hash))
        reply = await stubs.chain.ValidateBlock(
            pb.ValidateBlockRequest(block=foreign, validate_signature=True, validate_hash=True)
        )
        assert not reply.valid and not reply.signature_valid and reply.hash_valid


# -- anchoring ------------------------------------------------------------------------------


def signed_anchor_payload() -> pb.SessionAnchorPayload:
    return anchors.payload_of(anchor_request())


def check_proof_offline(
    proof: apb.GetAnchoringProofResponse, validator_keys: dict[str, str]
) -> None:
    """Everything an offline verifier checks, with nothing but the bundle and the keys."""
    body = proof.canonical_transaction_body
    tx_hash = canonical.sha256_hex(body)
    assert tx_hash == proof.transaction.tx_hash == proof.anchoring.tx_hash
    anchor = canonical.decode_tagged(body, canonical.TX_TAG)["session_anchor"]
    assert anchor["merkle_root"] == proof.anchoring.merkle_root
    assert anchor["session_id"] == proof.anchoring.session_id
    path = proof.transaction_proof
    assert path.leaf_hash == merkle.leaf_hash(bytes.fromhex(tx_hash)).hex()
    assert merkle.verify_inclusion(
        bytes.fromhex(path.leaf_hash),
        path.leaf_index,
        path.tree_size,
        [bytes.fromhex(p) for p in path.audit_path],
        bytes.fromhex(proof.block.header.merkle_root),
    )
    header = proof.canonical_block_header
    assert canonical.sha256_hex(header) == proof.block.hash
    assert header[9:17] == proof.block.header.height.to_bytes(8, "big")
    assert header[49:81].hex() == proof.block.header.merkle_root
    assert verify_signature(
        validator_keys[proof.block.header.proposer_id],
        canonical.proposal_message(proof.block.hash),
        proof.block.proposer_signature,
    )
    approvers = {
        a.validator_id
        for a in proof.block.approvals
        if verify_signature(
            validator_keys[a.validator_id],
            canonical.approval_message(proof.block.header.height, a.round, proof.block.hash),
            a.signature,
        )
    }
    assert 3 * len(approvers) >= 2 * len(validator_keys)


async def test_an_anchor_is_confirmed_verified_and_proven(chain: Mesh) -> None:
    owner = str(uuid.uuid4())
    request = anchor_request(owner=owner)
    async with chain.channel("blockchain", "sessions") as channel:
        stubs = ChainStubs(channel)
        created = (await stubs.anchoring.AnchorSession(request)).anchoring
        assert created.status == apb.ANCHORING_STATUS_PENDING
        assert created.HasField("estimated_confirm_time") and created.HasField("expire_time")
        record = await final_anchor(stubs, request.session_id)
        assert record.status == apb.ANCHORING_STATUS_CONFIRMED and record.block_height > 0
        assert record.anchoring_id == created.anchoring_id and record.confirmations >= 1

        same = await stubs.anchoring.VerifyAnchoring(
            apb.VerifyAnchoringRequest(
                session_id=request.session_id, merkle_root=request.merkle_root
            )
        )
        assert (
            same.verified and same.merkle_proof_valid and same.block_height == record.block_height
        )
        other = await stubs.anchoring.VerifyAnchoring(
            apb.VerifyAnchoringRequest(session_id=request.session_id, merkle_root="ee" * 32)
        )
        assert not other.verified and other.merkle_proof_valid
        wrong_height = await stubs.anchoring.VerifyAnchoring(
            apb.VerifyAnchoringRequest(
                session_id=request.session_id,
                merkle_root=request.merkle_root,
                block_height=record.block_height + 1,
            )
        )
        assert not wrong_height.verified

        with pytest.raises(grpc.aio.AioRpcError) as twice:
            await stubs.anchoring.AnchorSession(anchor_request(session_id=request.session_id))
        assert twice.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert details(twice.value).metadata["anchoring_id"] == created.anchoring_id

        proof = await stubs.anchoring.GetAnchoringProof(
            apb.GetAnchoringProofRequest(session_id=request.session_id)
        )
    async with chain.channel("blockchain", "admin") as channel:
        participants = await ChainStubs(channel).consensus.ListConsensusParticipants(
            cpb.ListConsensusParticipantsRequest()
        )
    check_proof_offline(proof, {v.validator_id: v.public_key for v in participants.validators})

    # users see their own anchorings only
    async with chain.channel("blockchain") as channel:
        stubs = ChainStubs(channel)
        mine = await stubs.anchoring.GetSessionAnchoring(
            apb.GetSessionAnchoringRequest(session_id=request.session_id),
            metadata=bearer(await chain.token(user_id=owner)),
        )
        assert mine.anchoring.session_id == request.session_id
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await stubs.anchoring.GetAnchoringProof(
                apb.GetAnchoringProofRequest(session_id=request.session_id),
                metadata=bearer(await chain.token()),
            )
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_bad_manifest_signature_anchors_nothing(chain: Mesh) -> None:
    request = anchor_request()
    request.merkle_root = "ee" * 32  # not what the manifest signature covers
    async with chain.channel("blockchain", "sessions") as channel:
        stubs = ChainStubs(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs.anchoring.AnchorSession(request)
        assert details(refused.value).reason == "LUCID_ERR_4105"
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stubs.anchoring.GetSessionAnchoring(
                apb.GetSessionAnchoringRequest(session_id=request.session_id)
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as not_uuid:
            await stubs.anchoring.AnchorSession(anchor_request(session_id="not-a-uuid"))
        assert not_uuid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        pending = anchor_request()
        await stubs.anchoring.AnchorSession(pending)
        with pytest.raises(grpc.aio.AioRpcError) as early:
            await stubs.anchoring.GetAnchoringProof(
                apb.GetAnchoringProofRequest(session_id=str(uuid.uuid4()))
            )
        assert early.value.code() == grpc.StatusCode.NOT_FOUND
    async with chain.channel("blockchain", "nodes") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plane:
            await ChainStubs(channel).anchoring.AnchorSession(anchor_request())
        assert plane.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_anchoring_status_and_queue(chain: Mesh) -> None:
    async with chain.channel("blockchain", "sessions") as channel:
        request = anchor_request()
        await ChainStubs(channel).anchoring.AnchorSession(request)
        await final_anchor(ChainStubs(channel), request.session_id)
    async with chain.channel("blockchain", "admin") as channel:
        stubs = ChainStubs(channel)
        status = await stubs.anchoring.GetAnchoringServiceStatus(
            apb.GetAnchoringServiceStatusRequest()
        )
        assert status.confirmed_count >= 1 and status.batch_size == 10
        assert status.timeout.seconds == 60
        done = await stubs.anchoring.ListAnchorings(
            apb.ListAnchoringsRequest(statuses=[apb.ANCHORING_STATUS_CONFIRMED], page_size=1000)
        )
        assert request.session_id in {a.session_id for a in done.anchorings}
        assert done.total_size == status.confirmed_count


# -- Merkle trees ------------------------------------------------------------------------------


def entries(n: int) -> list[str]:
    return [canonical.sha256_hex(f"chunk {i}".encode()) for i in range(n)]


async def test_merkle_trees_follow_rfc_9162(chain: Mesh) -> None:
    one, three = entries(1), entries(3)
    leaf = [merkle.leaf_hash(bytes.fromhex(e)) for e in three]
    async with chain.channel("blockchain", "sessions") as channel:
        stub = merkle_pb2_grpc.MerkleServiceStub(channel)
        single = await stub.BuildMerkleTree(
            mpb.BuildMerkleTreeRequest(session_id=str(uuid.uuid4()), chunk_hashes=one)
        )
        assert single.root_hash == merkle.leaf_hash(bytes.fromhex(one[0])).hex()
        assert single.tree_height == 0 and single.leaf_count == 1
        session = str(uuid.uuid4())
        built = await stub.BuildMerkleTree(
            mpb.BuildMerkleTreeRequest(session_id=session, chunk_hashes=three)
        )
        expected = merkle.node_hash(merkle.node_hash(leaf[0], leaf[1]), leaf[2])
        assert built.root_hash == expected.hex() and built.tree_height == 2
        again = await stub.BuildMerkleTree(
            mpb.BuildMerkleTreeRequest(session_id=session, chunk_hashes=three)
        )
        assert again.tree_id == built.tree_id
        with pytest.raises(grpc.aio.AioRpcError) as different:
            await stub.BuildMerkleTree(
                mpb.BuildMerkleTreeRequest(session_id=session, chunk_hashes=entries(4))
            )
        assert different.value.code() == grpc.StatusCode.ALREADY_EXISTS
        for bad in ([], ["a" * 63], ["g" * 64], ["AB" * 32]):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.BuildMerkleTree(
                    mpb.BuildMerkleTreeRequest(session_id=str(uuid.uuid4()), chunk_hashes=bad)
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_every_leaf_proof_verifies_and_a_flipped_sibling_fails(chain: Mesh) -> None:
    seven = entries(7)
    session = str(uuid.uuid4())
    async with chain.channel("blockchain", "sessions") as channel:
        built = await merkle_pb2_grpc.MerkleServiceStub(channel).BuildMerkleTree(
            mpb.BuildMerkleTreeRequest(session_id=session, chunk_hashes=seven)
        )
    tree = merkle.MerkleTree([merkle.leaf_hash(bytes.fromhex(e)) for e in seven])
    user = bearer(await chain.token())
    async with chain.channel("blockchain") as channel:
        stub = merkle_pb2_grpc.MerkleServiceStub(channel)
        for index in range(7):
            path = [p.hex() for p in tree.proof(index)]
            request = mpb.VerifyMerkleProofRequest(
                root_hash=built.root_hash,
                leaf_hash=tree.leaves[index].hex(),
                leaf_index=index,
                tree_size=7,
                audit_path=path,
            )
            reply = await stub.VerifyMerkleProof(request, metadata=user)
            assert reply.verified and reply.leaf_exists and reply.computed_root == built.root_hash
            flipped = bytearray(bytes.fromhex(path[0]))
            flipped[0] ^= 1
            request.audit_path[0] = flipped.hex()
            assert not (await stub.VerifyMerkleProof(request, metadata=user)).verified
        with pytest.raises(grpc.aio.AioRpcError) as outside:
            await stub.VerifyMerkleProof(
                mpb.VerifyMerkleProofRequest(
                    root_hash=built.root_hash, leaf_hash="00" * 32, leaf_index=7, tree_size=7
                ),
                metadata=user,
            )
        assert outside.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stored = await stub.GetMerkleTree(
            mpb.GetMerkleTreeRequest(root_hash=built.root_hash, include_leaves=True), metadata=user
        )
        assert list(stored.tree.chunk_hashes) == seven
        assert stored.tree.status == mpb.MERKLE_TREE_STATUS_BUILT
        validation = await stub.GetMerkleValidation(
            mpb.GetMerkleValidationRequest(session_id=session), metadata=user
        )
        assert not validation.anchored


async def test_a_tree_is_validated_once_its_root_is_anchored(chain: Mesh) -> None:
    chunks = entries(5)
    session = str(uuid.uuid4())
    async with chain.channel("blockchain", "sessions") as channel:
        stubs = ChainStubs(channel)
        built = await merkle_pb2_grpc.MerkleServiceStub(channel).BuildMerkleTree(
            mpb.BuildMerkleTreeRequest(session_id=session, chunk_hashes=chunks)
        )
        await stubs.anchoring.AnchorSession(
            anchor_request(session_id=session, root=built.root_hash)
        )
        record = await final_anchor(stubs, session)
    async with chain.channel("blockchain") as channel:
        validation = await merkle_pb2_grpc.MerkleServiceStub(channel).GetMerkleValidation(
            mpb.GetMerkleValidationRequest(session_id=session), metadata=bearer(await chain.token())
        )
    assert validation.anchored and validation.status == mpb.MERKLE_TREE_STATUS_VALIDATED
    assert validation.block_height == record.block_height


# -- consensus --------------------------------------------------------------------------------


async def test_consensus_reads(chain: Mesh) -> None:
    async with chain.channel("blockchain", "admin") as channel:
        stubs = ChainStubs(channel)
        height = await stubs.height()
        status = await stubs.consensus.GetConsensusStatus(cpb.GetConsensusStatusRequest())
        assert status.validator_count == 1 and status.required_approvals == 1
        assert status.current_slot == height + 1 and status.current_leader_id == "validator-0"
        assert abs(status.voting_threshold - 2 / 3) < 1e-9
        participants = await stubs.consensus.ListConsensusParticipants(
            cpb.ListConsensusParticipantsRequest()
        )
        (me,) = participants.validators
        assert me.validator_id == "validator-0" and me.status == cpb.VALIDATOR_STATUS_ACTIVE
        assert me.public_key == public_key_hex(validator_key(chain.settings))
        history = await stubs.consensus.ListConsensusHistory(
            cpb.ListConsensusHistoryRequest(status=cpb.ROUND_STATUS_APPROVED, page_size=5)
        )
        assert history.rounds and history.rounds[0].height == height
        assert history.rounds[0].votes[0].validator_id == "validator-0"
        schedule = await stubs.consensus.GetLeaderSchedule(cpb.GetLeaderScheduleRequest(count=3))
        assert schedule.current_slot == height + 1
        assert [s.slot for s in schedule.slots] == [height - 1, height, height + 1]
        assert schedule.slots[0].winner_id == "validator-0"
        assert schedule.slots[0].outcome == cpb.SLOT_OUTCOME_PRIMARY
        assert schedule.slots[-1].primary_id == "validator-0" and not schedule.slots[-1].winner_id


def task_proof(
    key: nacl.signing.SigningKey, node_id: str, task: int, value: int, **extra: int
) -> cpb.TaskProof:
    now = datetime.now(UTC)
    proof = cpb.TaskProof(
        node_id=node_id,
        slot=poot.task_slot(now),
        task_type=task,  # type: ignore[arg-type]
        value=value,
        session_count=extra.get("sessions", 0),
        chunk_count=extra.get("chunks", 0),
        public_key=public_key_hex(key),
    )
    proof.proof_time.FromDatetime(now)
    proof.signature = sign_hex(key, poot.proof_message(proof))
    return proof


async def test_task_proofs_earn_work_credits(chain: Mesh) -> None:
    key = nacl.signing.SigningKey.generate()
    node = str(uuid.uuid4())
    relay = task_proof(key, node, cpb.TASK_TYPE_RELAY_BANDWIDTH, 12 * MIB, sessions=1)
    uptime = task_proof(key, node, cpb.TASK_TYPE_UPTIME_BEACON, 120)
    async with chain.channel("blockchain", "nodes") as channel:
        stubs = ChainStubs(channel)
        first = await stubs.consensus.SubmitTaskProof(cpb.SubmitTaskProofRequest(proof=relay))
        assert first.accepted and first.epoch == poot.epoch_of_slot(relay.slot)
        again = await stubs.consensus.SubmitTaskProof(cpb.SubmitTaskProofRequest(proof=relay))
        assert again.proof_id == first.proof_id
        await stubs.consensus.SubmitTaskProof(cpb.SubmitTaskProofRequest(proof=uptime))
        changed = task_proof(key, node, cpb.TASK_TYPE_RELAY_BANDWIDTH, 13 * MIB, sessions=1)
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await stubs.consensus.SubmitTaskProof(cpb.SubmitTaskProofRequest(proof=changed))
        assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
        forged = task_proof(key, str(uuid.uuid4()), cpb.TASK_TYPE_STORAGE_AVAILABILITY, 5)
        forged.value = 6
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stubs.consensus.SubmitTaskProof(cpb.SubmitTaskProofRequest(proof=forged))
        assert details(bad.value).reason == "LUCID_ERR_4105"
        late = task_proof(key, str(uuid.uuid4()), cpb.TASK_TYPE_VALIDATION_SIGNATURE, 1)
        late.slot -= 5
        late.signature = sign_hex(key, poot.proof_message(late))
        with pytest.raises(grpc.aio.AioRpcError) as wrong_slot:
            await stubs.consensus.SubmitTaskProof(cpb.SubmitTaskProofRequest(proof=late))
        assert wrong_slot.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        async def credited() -> cpb.WorkTally | None:
            reply = await stubs.consensus.GetWorkCredits(cpb.GetWorkCreditsRequest(entity_id=node))
            return reply.tallies[0] if reply.tallies and reply.tallies[0].uptime_score else None

        token = await super_admin(chain)
        async with chain.channel("blockchain") as operator:  # a block is due only for real work
            await ChainStubs(operator).chain.SubmitTransaction(
                pb.SubmitTransactionRequest(transaction=signed(data_body())), metadata=token
            )
        tally = await wait_for(credited, timeout_s=30)
    assert tally.relay_credits == 3 and tally.credits == 3
    assert abs(tally.uptime_score - 120 / 604_800) < 1e-12
    assert not tally.eligible and tally.rank == 0


def variant(
    vote: cpb.SubmitConsensusVoteRequest, key: nacl.signing.SigningKey | None, **changes: object
) -> cpb.SubmitConsensusVoteRequest:
    """A copy of a vote with fields changed, signed again by ``key`` (or left unsigned)."""
    copy = cpb.SubmitConsensusVoteRequest()
    copy.CopyFrom(vote)
    for name, value in changes.items():
        setattr(copy, name, value)
    if key is not None:
        copy.signature = sign_hex(key, vote_message(copy))
    return copy


async def test_block_and_parameter_votes_are_validators_only(chain: Mesh) -> None:
    key = validator_key(chain.settings)
    vote = cpb.SubmitConsensusVoteRequest(
        voter_id="validator-0",
        vote_type=pb.VOTE_TYPE_PARAMETER,
        target_id=f"block_interval_{uuid.uuid4().hex[:8]}",
        decision=pb.VOTE_DECISION_APPROVE,
        reasoning="fine as it is",
        vote_time=now_stamp(),
        public_key=public_key_hex(key),
    )
    vote.signature = sign_hex(key, vote_message(vote))
    async with chain.channel("blockchain", "nodes") as channel:
        stubs = ChainStubs(channel)
        reply = await stubs.consensus.SubmitConsensusVote(vote)
        assert reply.accepted and reply.vote_weight == 1.0 and reply.tx_hash
        assert (await stubs.consensus.SubmitConsensusVote(vote)).vote_id == reply.vote_id

        stranger = nacl.signing.SigningKey.generate()
        node_block_vote = variant(
            vote,
            stranger,
            voter_id=str(uuid.uuid4()),
            vote_type=pb.VOTE_TYPE_BLOCK,
            target_id="ab" * 32,
            public_key=public_key_hex(stranger),
        )
        block_vote = variant(vote, key, vote_type=pb.VOTE_TYPE_BLOCK, target_id="ab" * 32)
        forged = variant(vote, None, reasoning="changed after signing")
        turned = variant(vote, key, decision=pb.VOTE_DECISION_REJECT)
        for request, status, reason in (
            (node_block_vote, grpc.StatusCode.PERMISSION_DENIED, "LUCID_ERR_4103"),
            (block_vote, grpc.StatusCode.FAILED_PRECONDITION, "LUCID_ERR_4104"),
            (forged, grpc.StatusCode.INVALID_ARGUMENT, "LUCID_ERR_4105"),
            (turned, grpc.StatusCode.ALREADY_EXISTS, "LUCID_ERR_4002"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stubs.consensus.SubmitConsensusVote(request)
            assert refused.value.code() == status
            assert details(refused.value).reason == reason
    async with chain.channel("blockchain", "admin") as channel:
        recorded = await ChainStubs(channel).chain.GetTransaction(
            pb.GetTransactionRequest(tx_hash=reply.tx_hash)
        )
    payload = recorded.transaction.signed.body.consensus_vote
    assert payload.target_id == vote.target_id and payload.signature == vote.signature


def node_vote(
    key: nacl.signing.SigningKey, target: str, *, approve: bool = True, slot: int | None = None
) -> cpb.SubmitConsensusVoteRequest:
    """A node's signed PoOT validation vote on ``target`` in ``slot`` (default: now's)."""
    vote = pootvotes.poot_vote(
        voter_id=str(uuid.uuid5(uuid.NAMESPACE_OID, public_key_hex(key))),
        public_key=public_key_hex(key),
        target_id=target,
        slot=poot.task_slot(datetime.now(UTC)) if slot is None else slot,
        approve=approve,
        proof_signature="cd" * 64,
    )
    vote.signature = pootvotes.sign(vote, key)
    return vote


async def test_poot_votes_come_from_the_nodes_cluster_and_are_tallied(chain: Mesh) -> None:
    target = str(uuid.uuid4())
    voter, other = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    vote = node_vote(voter, target)
    async with chain.channel("blockchain", "admin") as reading:
        reader = ChainStubs(reading).consensus

        async def tally() -> cpb.ListConsensusVotesResponse:
            reply: cpb.ListConsensusVotesResponse = await reader.ListConsensusVotes(
                cpb.ListConsensusVotesRequest(
                    vote_type=pb.VOTE_TYPE_POOT_VALIDATION, target_id=target
                )
            )
            return reply

        token = bearer(
            await chain.token(
                role=access_pb2.ROLE_NODE_OPERATOR, kyc=access_pb2.KYC_STATUS_VERIFIED
            )
        )
        for identity, metadata, reason in (
            ("admin", (), "LUCID_ERR_2013"),  # a service the access rule does not name
            ("operator", token, "LUCID_ERR_4103"),  # a user allowed to vote, not the cluster
        ):
            async with chain.channel("blockchain", identity) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await ChainStubs(channel).consensus.SubmitConsensusVote(vote, metadata=metadata)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert details(denied.value).reason == reason

        async with chain.channel("blockchain", "nodes") as channel:
            stubs = ChainStubs(channel)
            stranger = nacl.signing.SigningKey.generate()
            forged = node_vote(voter, target)
            forged.signature = pootvotes.sign(forged, stranger)  # not the key it names
            ahead = node_vote(voter, target, slot=poot.task_slot(datetime.now(UTC)) + 5)
            for request, status, reason in (
                (forged, grpc.StatusCode.INVALID_ARGUMENT, "LUCID_ERR_4105"),
                (ahead, grpc.StatusCode.INVALID_ARGUMENT, "LUCID_ERR_1001"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stubs.consensus.SubmitConsensusVote(request)
                assert refused.value.code() == status
                assert details(refused.value).reason == reason

            reply = await stubs.consensus.SubmitConsensusVote(vote)
            assert reply.accepted and reply.tx_hash
            again = await stubs.consensus.SubmitConsensusVote(vote)  # a retry: the same vote
            assert (again.vote_id, again.tx_hash) == (reply.vote_id, reply.tx_hash)
            with pytest.raises(grpc.aio.AioRpcError) as duplicate:  # same voter, target, slot
                await stubs.consensus.SubmitConsensusVote(node_vote(voter, target, approve=False))
            assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert details(duplicate.value).reason == "LUCID_ERR_4002"
            rejected = await stubs.consensus.SubmitConsensusVote(
                node_vote(other, target, approve=False)
            )
            earlier = await stubs.consensus.SubmitConsensusVote(  # the slot before: a new vote
                node_vote(voter, target, slot=poot.task_slot(datetime.now(UTC)) - 1)
            )

        async def recorded() -> cpb.ListConsensusVotesResponse | None:
            reply = await tally()
            return reply if reply.total_size == 3 else None

        listed = await wait_for(recorded, timeout_s=30)
    assert (listed.tally.approve_count, listed.tally.reject_count) == (2, 1)
    assert listed.tally.abstain_count == 0
    assert {v.tx_hash for v in listed.votes} == {reply.tx_hash, rejected.tx_hash, earlier.tx_hash}
    mine = next(v for v in listed.votes if v.tx_hash == reply.tx_hash)
    assert (mine.voter_id, mine.decision, mine.slot) == (
        vote.voter_id,
        pb.VOTE_DECISION_APPROVE,
        poot.task_slot(vote.vote_time.ToDatetime(tzinfo=UTC)),
    )
    assert mine.block_height > 0 and mine.signature == vote.signature
    checked = cpb.SubmitConsensusVoteRequest(
        voter_id=mine.voter_id,
        vote_type=mine.vote_type,
        target_id=mine.target_id,
        decision=mine.decision,
        reasoning=mine.reasoning,
        vote_time=mine.vote_time,
        public_key=mine.public_key,
        signature=mine.signature,
    )
    assert pootvotes.verifies(checked)  # anyone can check the node's vote from the chain
    by_voter = await reader_votes(chain, vote.voter_id)
    assert {v.tx_hash for v in by_voter} == {reply.tx_hash, earlier.tx_hash}


async def reader_votes(chain: Mesh, voter_id: str) -> list[cpb.ConsensusVote]:
    async with chain.channel("blockchain", "admin") as channel:
        reply = await ChainStubs(channel).consensus.ListConsensusVotes(
            cpb.ListConsensusVotesRequest(voter_id=voter_id, page_size=10)
        )
    return list(reply.votes)


async def test_validator_rpcs_are_for_validators_only(chain: Mesh) -> None:
    for identity in ("sessions", "admin", "operator"):
        async with chain.channel("blockchain", identity) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await ChainStubs(channel).consensus.SyncBlocks(cpb.SyncBlocksRequest(from_height=0))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with chain.channel("blockchain", "blockchain") as channel:
        stubs = ChainStubs(channel)
        synced = await stubs.consensus.SyncBlocks(
            cpb.SyncBlocksRequest(from_height=0, max_blocks=2)
        )
        assert [b.header.height for b in synced.blocks] == [0, 1] and synced.has_more
        assert synced.blocks[1].transactions and synced.blocks[1].approvals
        commit = await stubs.consensus.CommitBlock(cpb.CommitBlockRequest(block=synced.blocks[1]))
        assert commit.committed  # already final here: idempotent
        relayed = await stubs.consensus.RelayTransactions(
            cpb.RelayTransactionsRequest(
                transactions=[
                    signed(data_body()),
                    signed(data_body(description="TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")),
                ],
                validator_id="validator-9",
            )
        )
        assert (relayed.accepted_count, relayed.refused_count) == (1, 1)


def _is_beacon(tx: pb.Transaction) -> bool:
    body = tx.signed.body
    return body.system.action == "poot.task_proof" and (
        poot.proof_from_parameters(body.system.parameters).task_type == cpb.TASK_TYPE_UPTIME_BEACON
    )


async def _pending(mesh: Mesh) -> int:
    async with mesh.channel("blockchain", "admin") as channel:
        reply = await ChainStubs(channel).chain.ListPendingTransactions(
            pb.ListPendingTransactionsRequest()
        )
    return reply.total_size


def _with(body: pb.TransactionBody, **changes: object) -> pb.TransactionBody:
    for name, value in changes.items():
        setattr(body, name, value)
    return body


def _system(action: str, **parameters: object) -> pb.TransactionBody:
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(action=action),
        create_time=now_stamp(),
    )
    if parameters:
        body.system.parameters.update(parameters)
    return body


def test_canonical_body_is_readable_json() -> None:
    body = _system("note.add", text="hello")
    data = json.loads(canonical.encode_message(canonical.TX_TAG, body).split(b"\n", 1)[1])
    assert data["system"] == {"action": "note.add", "parameters": {"text": "hello"}}


async def test_chain_routes_through_the_edge(chain: Mesh) -> None:
    """The REST routes of the chain (google.api.http) reach the validator through the edge."""
    import aiohttp

    from tests.support import serve_edge

    headers = {"authorization": f"Bearer {await chain.token()}"}
    async with serve_edge(chain.settings.replace(edge_tls=False)) as url:
        base = f"{url}/api/v1/chain"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/info") as response:
                info = await response.json()
            assert response.status == 200 and info["network_name"] == "lucid_blocks"
            assert info["consensus_algorithm"] == "PoOT"
            async with http.get(f"{base}/blocks/latest", headers=headers) as response:
                latest = await response.json()
            assert response.status == 200
            # blocks may be finalised between the two calls
            assert int(latest["block"]["header"]["height"]) >= int(info["current_height"])
            async with http.get(f"{base}/blocks/height/0", headers=headers) as response:
                genesis = await response.json()
            assert genesis["block"]["header"]["previous_hash"] == "0" * 64
            async with http.get(f"{base}/blocks?page_size=101", headers=headers) as response:
                assert response.status == 400


async def test_work_credits_of_any_epoch_number_are_an_answer(chain: Mesh) -> None:
    """Found by the gRPC fuzz (tests/fuzz): an epoch past what a datetime can hold made
    GetWorkCredits answer INTERNAL. A future epoch has no credits of its own yet."""
    from lucid.lib import taskproofs

    assert taskproofs.epoch_end(2**63 - 1) == taskproofs.LATEST  # no OverflowError
    assert taskproofs.slot_start(-(2**62)) == taskproofs.EARLIEST
    async with chain.channel("blockchain", "nodes") as channel:
        stubs = ChainStubs(channel)
        for epoch in (2**63 - 1, 2**40, 10**6):
            reply = await stubs.consensus.GetWorkCredits(cpb.GetWorkCreditsRequest(epoch=epoch))
            assert all(t.epoch == epoch for t in reply.tallies)

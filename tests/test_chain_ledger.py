"""One validator's ledger on its own (no consensus loop): the pending pool, block selection,
one anchor per session, anchoring expiry, genesis checks (spec 02 §7 checks 1, 2, 7, 10)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import nacl.signing
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.blockchain import anchors, blocks, poot, schema, transactions
from lucid.blockchain.config import ChainConfig
from lucid.blockchain.keys import ValidatorInfo, ValidatorSet, public_key_hex, sign_hex
from lucid.blockchain.ledger import ChainError, Ledger
from lucid.blockchain.store.chain import Repository
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib.clock import FakeClock
from lucid.runtime.config import Settings
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.schema import ensure_schema
from tests.chain_support import anchor_request, data_body, signed

KEY = nacl.signing.SigningKey.generate()
VALIDATORS = ValidatorSet((ValidatorInfo("validator-0", public_key_hex(KEY)),))


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.mongodb_uri, tz_aware=True
    )
    database = client[f"lucid_ledger_{uuid.uuid4().hex[:10]}"]
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        await client.close()


async def open_ledger(
    settings: Settings, db: AsyncDatabase[dict[str, object]], clock: FakeClock, **config: object
) -> Ledger:
    chain_config = ChainConfig.of(settings.replace(validators=1, validator_index=0), **config)
    await ensure_schema(db, schema.collections(chain_config.collection_prefix))  # type: ignore[arg-type]
    ledger = Ledger(
        Repository(db, chain_config.collection_prefix),  # type: ignore[arg-type]
        VALIDATORS,
        chain_config,
        clock,
    )
    await ledger.open()
    return ledger


def anchor_tx(session_id: str | None = None, root: str | None = None) -> pb.SignedTransaction:
    payload = anchors.payload_of(anchor_request(session_id=session_id, root=root))
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SESSION_ANCHOR,
        session_anchor=payload,
        nonce=str(uuid.uuid4()),
    )
    body.create_time.FromDatetime(datetime.now(UTC))
    return transactions.sign(body, "validator-0", KEY)


async def append_block(ledger: Ledger) -> pb.Block:
    chosen = await ledger.select_for_block()
    block = blocks.build(
        parent=ledger.tip,
        transactions=chosen,
        proposer_id="validator-0",
        key=KEY,
        slot=0,
        block_time_ns=ledger.tip.time_ns + 10**9,
    )
    checked, errors = await ledger.check_candidate(block)
    assert errors == []
    await ledger.append(block, checked)
    return block


async def test_genesis_is_stored_once_and_checked_on_open(
    settings: Settings, db: AsyncDatabase[dict[str, object]]
) -> None:
    clock = FakeClock()
    ledger = await open_ledger(settings, db, clock)
    assert ledger.tip.height == 0 and ledger.tip.hash == ledger.genesis.hash
    again = await open_ledger(settings, db, clock)
    assert again.tip == ledger.tip
    other = Ledger(
        ledger.repo,
        ValidatorSet(
            (ValidatorInfo("validator-0", public_key_hex(nacl.signing.SigningKey.generate())),)
        ),
        ledger.config,
        clock,
    )
    with pytest.raises(ChainError, match="genesis"):
        await other.open()
    doc = await ledger.repo.block_doc(height=0)
    assert doc is not None
    doc.pop("_id")
    doc["hash"] = "ab" * 32
    with pytest.raises(DuplicateKeyError):  # a second block at one height is refused
        await ledger.repo.insert_block(doc)


async def test_a_block_takes_at_most_1000_of_1001_pending_oldest_first(
    settings: Settings, db: AsyncDatabase[dict[str, object]]
) -> None:
    clock = FakeClock()
    ledger = await open_ledger(settings, db, clock)
    hashes = []
    for i in range(1001):
        # Created at the ledger's clock: on a loaded machine the loop outlasts the
        # 30 s tolerance for future create times.
        doc, new = await ledger.accept(signed(data_body(f"bulk-{i}", at=clock.now())))
        assert new
        hashes.append(doc["tx_hash"])
        clock.advance(0.001)
    block = await append_block(ledger)
    assert list(block.tx_hashes) == hashes[:1000]
    assert await ledger.repo.count_pending() == 1
    second = await append_block(ledger)
    assert list(second.tx_hashes) == hashes[1000:]
    assert await ledger.select_for_block() == []


async def test_one_anchor_per_session(
    settings: Settings, db: AsyncDatabase[dict[str, object]]
) -> None:
    ledger = await open_ledger(settings, db, FakeClock())
    session = str(uuid.uuid4())
    await ledger.accept(anchor_tx(session))
    with pytest.raises(LucidError) as second:
        await ledger.accept(anchor_tx(session))
    assert second.value.code == ErrorCode.ERROR_CODE_ALREADY_EXISTS
    block = await append_block(ledger)
    assert len(block.tx_hashes) == 1
    doc = await ledger.repo.anchoring(session)
    assert doc is not None and doc["status"] == anchors.CONFIRMED and doc["block_height"] == 1
    with pytest.raises(LucidError):
        await ledger.accept(anchor_tx(session))
    # a block carrying a second anchor of the session is not a valid next block
    other = transactions.check(anchor_tx(session), VALIDATORS)
    rogue = blocks.build(
        parent=ledger.tip,
        transactions=[other],
        proposer_id="validator-0",
        key=KEY,
        slot=0,
        block_time_ns=ledger.tip.time_ns + 10**9,
    )
    _, errors = await ledger.check_candidate(rogue)
    assert any("already anchored" in e for e in errors)


async def test_a_candidate_of_pooled_transactions_is_checked_without_lookups_until_final(
    settings: Settings, db: AsyncDatabase[dict[str, object]]
) -> None:
    """What the pool's lookups found not in the chain is not looked up again when a block of
    it is checked; once a block holds it, it is looked up (and refused) again."""
    ledger = await open_ledger(settings, db, FakeClock())
    asked: list[list[str]] = []
    confirmed_among, anchored_among = (
        ledger.repo.confirmed_among,
        ledger.repo.anchored_sessions_among,
    )

    async def counted_confirmed(hashes: Iterable[str], max_height: int) -> set[str]:
        asked.append(list(hashes))
        return await confirmed_among(asked[-1], max_height)

    async def counted_anchored(session_ids: Iterable[str]) -> dict[str, str]:
        asked.append(list(session_ids))
        return await anchored_among(asked[-1])

    ledger.repo.confirmed_among = counted_confirmed  # type: ignore[method-assign]
    ledger.repo.anchored_sessions_among = counted_anchored  # type: ignore[method-assign]
    session = str(uuid.uuid4())
    await ledger.accept(anchor_tx(session))
    await ledger.accept(signed(data_body("pooled")))
    asked.clear()
    block = await append_block(ledger)  # checks the candidate of both
    assert len(block.tx_hashes) == 2
    assert asked and all(a == [] for a in asked)  # selected and checked, no lookup
    again = [transactions.check(t.signed, VALIDATORS) for t in block.transactions]
    replay = blocks.build(
        parent=ledger.tip,
        transactions=again,
        proposer_id="validator-0",
        key=KEY,
        slot=0,
        block_time_ns=ledger.tip.time_ns + 10**9,
    )
    asked.clear()
    _, errors = await ledger.check_candidate(replay)
    assert sorted(map(sorted, asked)) == sorted([sorted(block.tx_hashes), [session]])
    assert any("already in the chain" in e for e in errors)
    assert any("already anchored" in e for e in errors)


async def test_an_anchoring_expires_and_the_session_may_anchor_again(
    settings: Settings, db: AsyncDatabase[dict[str, object]]
) -> None:
    clock = FakeClock()
    ledger = await open_ledger(settings, db, clock, anchoring_timeout_s=60.0)
    session = str(uuid.uuid4())
    first, _ = await ledger.accept(anchor_tx(session))
    clock.advance(59)
    assert await ledger.expire_anchorings() == 0
    clock.advance(2)
    assert await ledger.expire_anchorings() == 1
    doc = await ledger.repo.anchoring(session)
    assert doc is not None and doc["status"] == anchors.EXPIRED
    dropped = await ledger.repo.tx_doc(first["tx_hash"])
    assert dropped is not None and dropped["status"] == "dropped"
    second, _ = await ledger.accept(anchor_tx(session))
    doc = await ledger.repo.anchoring(session)
    assert doc is not None and doc["status"] == anchors.PENDING
    assert doc["tx_hash"] == second["tx_hash"]
    block = await append_block(ledger)
    assert list(block.tx_hashes) == [second["tx_hash"]]


async def test_a_restart_reapplies_the_tip(
    settings: Settings, db: AsyncDatabase[dict[str, object]]
) -> None:
    clock = FakeClock()
    ledger = await open_ledger(settings, db, clock)
    session = str(uuid.uuid4())
    await ledger.accept(anchor_tx(session))
    block = await append_block(ledger)
    # as if the process died between storing the block and applying what follows from it
    tx_hash = block.tx_hashes[0]
    stored = await ledger.repo.tx_doc(tx_hash)
    assert stored is not None
    await ledger.repo.mempool.insert_one({**stored, "status": "pending", "block_height": None})
    await ledger.repo.anchor_index.delete_one({"_id": session})
    await ledger.repo.update_anchoring(session, {"status": anchors.PENDING})
    assert await ledger.repo.count_pending() == 1
    reopened = await open_ledger(settings, db, clock)
    assert reopened.tip.height == 1
    tx = await reopened.repo.tx_doc(tx_hash)
    assert tx is not None and tx["status"] == "confirmed" and tx["block_height"] == 1
    doc = await reopened.repo.anchoring(session)
    assert doc is not None and doc["status"] == anchors.CONFIRMED
    assert await reopened.repo.count_pending() == 0
    assert await reopened.repo.anchored_sessions_among([session]) == {session: tx_hash}


async def test_an_uptime_beacon_rides_along(
    settings: Settings, db: AsyncDatabase[dict[str, object]]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    ledger = await open_ledger(settings, db, clock)
    now = clock.now()
    proof = cpb.TaskProof(
        node_id=poot.validator_node_id(public_key_hex(KEY)),
        slot=poot.task_slot(now),
        task_type=poot.UPTIME_BEACON,
        value=120,
        public_key=public_key_hex(KEY),
    )
    proof.proof_time.FromDatetime(now)
    proof.signature = sign_hex(KEY, poot.proof_message(proof))
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(
            action=transactions.TASK_PROOF_ACTION, parameters=poot.proof_parameters(proof)
        ),
    )
    body.create_time.FromDatetime(now)
    beacon, _ = await ledger.accept(transactions.sign(body, "validator-0", KEY))
    assert beacon["rides_along"]
    assert not await ledger.has_work() and await ledger.select_for_block() == []
    data, _ = await ledger.accept(signed(data_body()))
    assert await ledger.has_work()
    block = await append_block(ledger)
    assert set(block.tx_hashes) == {beacon["tx_hash"], data["tx_hash"]}
    schedule = await ledger.schedule()  # credits come from the chain: uptime, no work
    assert schedule.leaders == ("validator-0",)
    facts = await ledger.repo.task_facts(0, 2**62, ledger.tip.height)
    assert [f["value"] for f in facts] == [120]

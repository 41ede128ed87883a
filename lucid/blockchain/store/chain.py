"""The chain's store: MongoDB access of one validator (blocks, transactions, anchorings,
votes, trees).

Stored forms are plain documents that name every field, so an edit made in the
database shows in what the chain serves and in ``lucid chain verify``: a block is
rebuilt from its document (header fields, signatures, approvals), a transaction
from its canonical encoding (stored as text), nothing from a cached copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from lucid.blockchain import schema, transactions
from lucid.blockchain.transactions import CheckedTransaction
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.common.v1 import proofs_pb2
from lucid.runtime.wire import optional_timestamp

Doc = dict[str, Any]
T = TypeVar("T")

DUPLICATE_KEY = 11000
PENDING = "pending"
CONFIRMED = "confirmed"
DROPPED = "dropped"
FAILED = "failed"

TX_STATUS = {
    PENDING: pb.TRANSACTION_STATUS_PENDING,
    CONFIRMED: pb.TRANSACTION_STATUS_CONFIRMED,
    DROPPED: pb.TRANSACTION_STATUS_DROPPED,
    FAILED: pb.TRANSACTION_STATUS_FAILED,
}


def utc(moment: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- blocks ------------------------------------------------------------------------------


def block_to_doc(block: pb.Block, *, final_time: datetime) -> Doc:
    """The stored form of a final block (without its transactions)."""
    header = block.header
    return {
        "height": header.height,
        "hash": block.hash,
        "version": header.version,
        "previous_hash": header.previous_hash,
        "merkle_root": header.merkle_root,
        "block_time_s": header.block_time.seconds,
        "block_time_nanos": header.block_time.nanos,
        "block_time": header.block_time.ToDatetime(tzinfo=UTC),
        "proposer_id": header.proposer_id,
        "slot": header.slot,
        "transaction_count": header.transaction_count,
        "proposer_public_key": block.proposer_public_key,
        "proposer_signature": block.proposer_signature,
        "tx_hashes": list(block.tx_hashes),
        "approvals": [
            {
                "validator_id": a.validator_id,
                "public_key": a.public_key,
                "signature": a.signature,
                "round": a.round,
                "approve_time": a.approve_time.ToDatetime(tzinfo=UTC),
            }
            for a in block.approvals
        ],
        "status": CONFIRMED,
        "final_time": final_time,
        "size_bytes": block.size_bytes,
        "validator_count": block.validator_count,
    }


def doc_to_block(doc: Doc) -> pb.Block:
    """A stored block (its transactions are attached separately)."""
    header = proofs_pb2.BlockHeader(
        version=int(doc["version"]),
        height=int(doc["height"]),
        previous_hash=doc["previous_hash"],
        merkle_root=doc["merkle_root"],
        block_time=timestamp_pb2.Timestamp(
            seconds=int(doc["block_time_s"]), nanos=int(doc["block_time_nanos"])
        ),
        proposer_id=doc["proposer_id"],
        slot=int(doc["slot"]),
        transaction_count=int(doc["transaction_count"]),
    )
    block = pb.Block(
        header=header,
        hash=doc["hash"],
        proposer_public_key=doc["proposer_public_key"],
        proposer_signature=doc["proposer_signature"],
        tx_hashes=list(doc["tx_hashes"]),
        status=pb.BLOCK_STATUS_CONFIRMED,
        final=True,
        size_bytes=int(doc.get("size_bytes", 0)),
        validator_count=int(doc.get("validator_count", 0)),
    )
    for a in doc.get("approvals", []):
        block.approvals.add(
            validator_id=a["validator_id"],
            public_key=a["public_key"],
            signature=a["signature"],
            round=int(a.get("round", 0)),
            approve_time=optional_timestamp(a.get("approve_time")),
        )
    final_time = optional_timestamp(doc.get("final_time"))
    if final_time is not None:
        block.final_time.CopyFrom(final_time)
    return block


# -- transactions -------------------------------------------------------------------------


def tx_doc(checked: CheckedTransaction, *, status: str, submit_time: datetime) -> Doc:
    """The stored form of a transaction."""
    body = checked.signed.body
    return {
        "tx_hash": checked.tx_hash,
        "type": int(body.type),
        "status": status,
        "canonical": checked.canonical.decode(),
        "signer_id": checked.signed.signer_id,
        "public_key": checked.signed.public_key,
        "signature": checked.signed.signature,
        "size_bytes": checked.size_bytes,
        "fee_micros": body.fee_micros,
        "session_id": checked.session_id or None,
        "task": checked.task.as_doc() if checked.task else None,
        "rides_along": checked.rides_along,
        "submit_time": submit_time,
        "block_height": None,
        "block_hash": None,
        "transaction_index": None,
        "confirm_time": None,
        "error_message": "",
    }


def doc_to_signed(doc: Doc) -> pb.SignedTransaction:
    """The signed transaction a stored document holds."""
    return pb.SignedTransaction(
        body=transactions.body_from_encoding(doc["canonical"].encode()),
        signer_id=doc["signer_id"],
        public_key=doc["public_key"],
        signature=doc["signature"],
    )


def doc_to_transaction(doc: Doc, *, tip_height: int | None = None) -> pb.Transaction:
    """A stored transaction as the contract shows it."""
    tx = pb.Transaction(
        tx_hash=doc["tx_hash"],
        signed=doc_to_signed(doc),
        status=TX_STATUS.get(doc.get("status", PENDING), pb.TRANSACTION_STATUS_UNSPECIFIED),
        size_bytes=int(doc.get("size_bytes", 0)),
        error_message=doc.get("error_message") or "",
    )
    if doc.get("block_height") is not None and doc.get("status") == CONFIRMED:
        tx.block_height = int(doc["block_height"])
        tx.block_hash = doc["block_hash"]
        tx.transaction_index = int(doc["transaction_index"])
        if tip_height is not None:
            tx.confirmations = tip_height - tx.block_height + 1
    for name in ("submit_time", "confirm_time"):
        value = optional_timestamp(doc.get(name))
        if value is not None:
            getattr(tx, name).CopyFrom(value)
    return tx


CONCURRENCY = 8
"""Lookups and writes in flight at once for one call (FerretDB's SQLite refuses a crowd)."""

READ_CONCURRENCY = 25
"""``_id`` lookups in flight at once for one call that checks a block's transactions (reads
only; FerretDB v1 answers ``{"_id": {"$in": [...]}}`` with a scan of the collection, which
is slower than single lookups past a few thousand documents, so a block of 50 anchors
costs two waves of lookups per kind instead of seven)."""


async def gather_bounded(awaitables: Iterable[Awaitable[T]], limit: int = CONCURRENCY) -> list[T]:
    """``asyncio.gather`` with at most ``limit`` awaitables running at once, results in order."""
    gate = asyncio.Semaphore(limit)

    async def run(awaitable: Awaitable[T]) -> T:
        async with gate:
            return await awaitable

    return list(await asyncio.gather(*(run(a) for a in awaitables)))


SCAN_BATCH = 10_000
"""Documents per batch of a whole-collection scan: FerretDB v1 answers small batches
slowly (3001 transactions took 1.7 to 3 s in batches of 64, 0.4 to 1.3 s in one batch,
whatever the projection), so a scan asks for everything at once (16 MiB a batch at most)."""
BLOCK_FIELDS = {"block_time": False, "status": False, "final_time": False}
"""What a scan of blocks leaves out: the stored times that are not part of the header."""
SIGNED_FIELDS = {"canonical": True, "signer_id": True, "public_key": True, "signature": True}
"""The fields of a stored transaction that make its signed transaction."""


def _between(name: str, low: int, high: int | None) -> Doc:
    """The query of a field from ``low`` up to ``high`` (both included; no bound: ``None``)."""
    bounds: Doc = {"$gte": low}
    if high is not None:
        bounds["$lte"] = high
    return {name: bounds}


@dataclass(frozen=True)
class RoundFilter:
    """Which consensus rounds a listing wants."""

    height_from: int = 0
    height_to: int | None = None
    """The last height (``None``: no bound)."""
    status: str | None = None
    """The stored status name (``None``: any)."""
    height: int | None = None
    """Exactly this height (overrides the range)."""
    round: int | None = None

    def query(self) -> Doc:
        """The MongoDB query."""
        query: Doc = (
            {"height": self.height}
            if self.height is not None
            else _between("height", self.height_from, self.height_to)
        )
        if self.round is not None:
            query["round"] = self.round
        if self.status is not None:
            query["status"] = self.status
        return query


@dataclass(frozen=True)
class VoteFilter:
    """Which consensus votes in final blocks a listing wants."""

    vote_type: int = 0
    """The vote type (0: any)."""
    target_id: str = ""
    voter_id: str = ""
    slot_from: int = 0
    slot_to: int | None = None
    """The last task slot (``None``: no bound)."""

    def query(self) -> Doc:
        """The MongoDB query."""
        query: Doc = {}
        if self.slot_from or self.slot_to is not None:
            query.update(_between("slot", self.slot_from, self.slot_to))
        if self.vote_type:
            query["vote_type"] = self.vote_type
        if self.target_id:
            query["target_id"] = self.target_id
        if self.voter_id:
            query["voter_id"] = self.voter_id
        return query


def height_key(height: int) -> str:
    """The ``_id`` of the block at a height (zero-padded, so ids sort like heights)."""
    return f"{height:012d}"


class Repository:
    """The collections of one validator.

    Every lookup on a hot path is by a string ``_id`` (block height, transaction hash,
    session id, ...): that is what every MongoDB-compatible server answers without a
    scan (FerretDB v1 pushes down nothing else). Pending transactions live in their
    own small collection, the pool, so counting and ordering them never reads the chain.
    """

    def __init__(self, db: AsyncDatabase[Doc], prefix: str) -> None:
        self.db = db
        self.prefix = prefix
        self.blocks: AsyncCollection[Doc] = db[prefix + schema.BLOCKS]
        self.block_index: AsyncCollection[Doc] = db[prefix + schema.BLOCK_INDEX]
        self.transactions: AsyncCollection[Doc] = db[prefix + schema.TRANSACTIONS]
        self.mempool: AsyncCollection[Doc] = db[prefix + schema.MEMPOOL]
        self.anchor_index: AsyncCollection[Doc] = db[prefix + schema.ANCHOR_INDEX]
        self.task_facts_: AsyncCollection[Doc] = db[prefix + schema.TASK_FACTS]
        self.vote_facts: AsyncCollection[Doc] = db[prefix + schema.VOTE_FACTS]
        self.anchorings: AsyncCollection[Doc] = db[prefix + schema.ANCHORINGS]
        self.merkle_trees: AsyncCollection[Doc] = db[prefix + schema.MERKLE_TREES]
        self.merkle_leaves: AsyncCollection[Doc] = db[prefix + schema.MERKLE_LEAVES]
        self.ballots: AsyncCollection[Doc] = db[prefix + schema.BALLOTS]
        self.voting: AsyncCollection[Doc] = db[prefix + schema.VOTING]
        self.rounds: AsyncCollection[Doc] = db[prefix + schema.ROUNDS]

    # -- blocks ------------------------------------------------------------------

    async def tip_doc(self) -> Doc | None:
        """The highest stored block (a scan: used when a validator opens its chain)."""
        return await self.blocks.find_one({}, sort=[("height", DESCENDING)])

    async def block_doc(
        self, *, height: int | None = None, block_hash: str | None = None
    ) -> Doc | None:
        """One block by height or hash."""
        if height is None:
            entry = await self.block_index.find_one({"_id": block_hash})
            if entry is None:
                return None
            height = int(entry["height"])
        doc = await self.blocks.find_one({"_id": height_key(height)})
        if doc is not None and block_hash is not None and doc["hash"] != block_hash:
            return None
        return doc

    async def insert_block(self, doc: Doc) -> None:
        """Stores a final block (one per height) and indexes its hash."""
        await self.blocks.insert_one({"_id": height_key(int(doc["height"])), **doc})
        await self.index_block(str(doc["hash"]), int(doc["height"]))

    async def index_block(self, block_hash: str, height: int) -> None:
        """Makes a stored block findable by its hash."""
        await self.block_index.update_one(
            {"_id": block_hash}, {"$set": {"height": height}}, upsert=True
        )

    async def block_docs(
        self, low: int, high: int, *, descending: bool, skip: int = 0, limit: int = 0
    ) -> list[Doc]:
        """The blocks from height ``low`` to ``high`` (both included), by height."""
        cursor = self.blocks.find(
            _between("height", low, high),
            sort=[("height", DESCENDING if descending else ASCENDING)],
            skip=skip,
        )
        if limit:
            cursor = cursor.limit(limit)
        return [doc async for doc in cursor]

    async def count_blocks(self, low: int, high: int) -> int:
        """How many blocks are stored from height ``low`` to ``high`` (both included)."""
        return await self.blocks.count_documents(_between("height", low, high))

    async def scan_blocks(self, batch_size: int = SCAN_BATCH) -> AsyncIterator[Doc]:
        """Every stored block, in no order (one pass over the collection, in batches)."""
        async with self.blocks.find({}, BLOCK_FIELDS, batch_size=batch_size) as cursor:
            async for doc in cursor:
                yield doc

    async def scan_transactions(self, batch_size: int = SCAN_BATCH) -> AsyncIterator[Doc]:
        """Every transaction that left the pool, in no order (one pass, in batches), with
        the fields ``doc_to_signed`` reads."""
        async with self.transactions.find({}, SIGNED_FIELDS, batch_size=batch_size) as cursor:
            async for doc in cursor:
                yield doc

    async def iter_blocks(self, from_height: int = 0) -> AsyncIterator[Doc]:
        """Every block from a height on, by height, until the first missing one."""
        height = from_height
        while (doc := await self.block_doc(height=height)) is not None:
            yield doc
            height += 1

    # -- transactions ----------------------------------------------------------------

    async def tx_doc(self, tx_hash: str) -> Doc | None:
        """One transaction, in the chain or in the pool."""
        doc = await self.transactions.find_one({"_id": tx_hash})
        if doc is None:
            doc = await self.mempool.find_one({"_id": tx_hash})
        return doc

    async def tx_docs(self, tx_hashes: Iterable[str]) -> dict[str, Doc]:
        """Transactions by hash (in the chain or in the pool)."""
        hashes = list(dict.fromkeys(tx_hashes))
        found = await gather_bounded(self.tx_doc(h) for h in hashes)
        return {h: doc for h, doc in zip(hashes, found, strict=True) if doc is not None}

    async def insert_pending(self, doc: Doc) -> None:
        """Puts a transaction into the pool (unique hash)."""
        await self.mempool.insert_one({"_id": doc["tx_hash"], **doc})

    async def store_final_txs(self, docs: Sequence[Doc]) -> None:
        """Stores the transactions of a final block being appended, as confirmed (over any
        earlier state: a dropped transaction another validator did include)."""
        if not docs:
            return
        duplicates: list[int] = []
        try:
            await self.transactions.insert_many(
                [{"_id": d["tx_hash"], **d} for d in docs], ordered=False
            )
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != DUPLICATE_KEY:
                    raise
                duplicates.append(int(error["index"]))
        for index in duplicates:
            doc = docs[index]
            await self.transactions.replace_one(
                {"_id": doc["tx_hash"]}, {"_id": doc["tx_hash"], **doc}
            )

    async def pending_among(self, tx_hashes: Iterable[str]) -> dict[str, Doc]:
        """The pool's documents of these transactions."""
        hashes = list(tx_hashes)
        if not hashes:
            return {}
        return {d["_id"]: d async for d in self.mempool.find({"_id": {"$in": hashes}})}

    async def unpool(self, tx_hashes: Sequence[str]) -> None:
        """Empties a final block's transactions from the pool."""
        if tx_hashes:
            await self.mempool.delete_many({"_id": {"$in": list(tx_hashes)}})

    async def pending_docs(self, *, tx_type: int = 0, skip: int = 0, limit: int = 0) -> list[Doc]:
        """Pending transactions, oldest first."""
        query: Doc = {"type": tx_type} if tx_type else {}
        cursor = self.mempool.find(
            query, sort=[("submit_time", ASCENDING), ("tx_hash", ASCENDING)], skip=skip
        )
        if limit:
            cursor = cursor.limit(limit)
        return [doc async for doc in cursor]

    async def count_pending(self, *, tx_type: int = 0, work_only: bool = False) -> int:
        """How many transactions are pending (``work_only``: not counting uptime beacons)."""
        query: Doc = {}
        if tx_type:
            query["type"] = tx_type
        if work_only:
            query["rides_along"] = False
        return await self.mempool.count_documents(query)

    async def drop_tx(self, tx_hash: str, reason: str, status: str = DROPPED) -> None:
        """Takes a pending transaction out of the pool, keeping why."""
        doc = await self.mempool.find_one_and_delete({"_id": tx_hash})
        if doc is not None:
            doc.update({"status": status, "error_message": reason})
            await self.transactions.update_one({"_id": tx_hash}, {"$setOnInsert": doc}, upsert=True)

    async def confirmed_among(self, tx_hashes: Iterable[str], max_height: int) -> set[str]:
        """Which of these transactions are in a final block up to ``max_height``."""
        hashes = list(tx_hashes)
        found = await gather_bounded(
            (
                self.transactions.find_one({"_id": h}, {"status": 1, "block_height": 1})
                for h in hashes
            ),
            READ_CONCURRENCY,
        )
        return {
            h
            for h, doc in zip(hashes, found, strict=True)
            if doc and doc["status"] == CONFIRMED and int(doc["block_height"]) <= max_height
        }

    async def anchored_sessions_among(self, session_ids: Iterable[str]) -> dict[str, str]:
        """Which of these sessions have an anchor in a final block (→ its transaction)."""
        ids = list(session_ids)
        found = await gather_bounded(
            (self.anchor_index.find_one({"_id": s}) for s in ids), READ_CONCURRENCY
        )
        return {s: doc["tx_hash"] for s, doc in zip(ids, found, strict=True) if doc is not None}

    async def index_anchors(self, anchors: Sequence[tuple[str, str]], height: int) -> None:
        """Records that a final block anchors these (session, transaction) pairs, a few
        writes at once (not one bulk write: a 50-statement update hung FerretDB v1 on
        PostgreSQL in a probe)."""
        await gather_bounded(
            self.anchor_index.update_one(
                {"_id": session_id}, {"$set": {"tx_hash": tx_hash, "height": height}}, upsert=True
            )
            for session_id, tx_hash in anchors
        )

    async def pending_anchor_of(self, session_id: str) -> Doc | None:
        """The pending anchor transaction of a session, if any."""
        return await self.mempool.find_one({"session_id": session_id})

    async def record_task_facts(self, tx_hash: str, height: int, facts: Doc) -> None:
        """Keeps the facts of a task proof in a final block (for work credits)."""
        await self.task_facts_.update_one(
            {"_id": tx_hash}, {"$set": {**facts, "block_height": height}}, upsert=True
        )

    async def task_facts(self, since_us: int, until_us: int, max_height: int) -> list[Doc]:
        """Task proofs in final blocks up to a height, proved in ``(since_us, until_us]``."""
        docs = self.task_facts_.find(
            {
                "block_height": {"$lte": max_height},
                "proof_us": {"$gt": since_us, "$lte": until_us},
            }
        )
        return [doc async for doc in docs]

    async def record_vote_facts(self, tx_hash: str, height: int, index: int, facts: Doc) -> None:
        """Keeps the facts of a consensus vote in a final block (for the vote reads)."""
        await self.vote_facts.update_one(
            {"_id": tx_hash},
            {"$set": {**facts, "block_height": height, "transaction_index": index}},
            upsert=True,
        )

    async def vote_fact_docs(self, where: VoteFilter, *, skip: int, limit: int) -> list[Doc]:
        """Votes in final blocks, newest first."""
        cursor = self.vote_facts.find(
            where.query(),
            sort=[("block_height", DESCENDING), ("transaction_index", DESCENDING)],
            skip=skip,
        ).limit(limit)
        return [doc async for doc in cursor]

    async def count_votes(self, where: VoteFilter, decision: int = 0) -> int:
        """How many votes in final blocks match (of one decision, unless 0)."""
        query = where.query()
        if decision:
            query["decision"] = decision
        return await self.vote_facts.count_documents(query)

    # -- anchorings ------------------------------------------------------------------

    async def anchoring(self, session_id: str) -> Doc | None:
        """A session's anchoring."""
        return await self.anchorings.find_one({"_id": session_id})

    async def anchorings_of(self, session_ids: Iterable[str]) -> dict[str, Doc]:
        """The anchorings of these sessions (lookups by id, a few at once)."""
        ids = list(dict.fromkeys(session_ids))
        found = await gather_bounded(self.anchoring(s) for s in ids)
        return {s: doc for s, doc in zip(ids, found, strict=True) if doc is not None}

    async def update_anchorings_by_id(self, changes: Sequence[tuple[str, Doc]]) -> None:
        """Changes several sessions' anchorings (session id → fields), a few at once."""
        await gather_bounded(
            self.anchorings.update_one({"_id": s}, {"$set": fields}) for s, fields in changes
        )

    async def insert_anchoring(self, doc: Doc) -> None:
        """Stores a new anchoring (one per session)."""
        await self.anchorings.insert_one({"_id": doc["session_id"], **doc})

    async def replace_anchoring(
        self, session_id: str, doc: Doc, states: Sequence[str] | None = None
    ) -> bool:
        """Replaces a session's anchoring (only from one of ``states`` when given)."""
        query: Doc = {"_id": session_id}
        if states is not None:
            query["status"] = {"$in": list(states)}
        outcome = await self.anchorings.replace_one(query, {"_id": session_id, **doc})
        return outcome.modified_count == 1

    async def delete_anchoring(self, session_id: str, anchoring_id: str) -> None:
        """Forgets an anchoring that could not be queued."""
        await self.anchorings.delete_one({"_id": session_id, "anchoring_id": anchoring_id})

    async def update_anchoring(
        self, session_id: str, changes: Doc, status: str | None = None
    ) -> Doc | None:
        """Changes a session's anchoring (only in ``status`` when given); the new document."""
        query: Doc = {"_id": session_id}
        if status is not None:
            query["status"] = status
        return await self.anchorings.find_one_and_update(
            query, {"$set": changes}, return_document=ReturnDocument.AFTER
        )

    async def update_anchorings(self, query: Doc, changes: Doc) -> int:
        """Changes every anchoring matching a query."""
        outcome = await self.anchorings.update_many(query, {"$set": changes})
        return outcome.modified_count

    async def anchoring_docs(self, query: Doc, *, skip: int, limit: int) -> list[Doc]:
        """Anchorings, oldest first."""
        cursor = self.anchorings.find(
            query, sort=[("submit_time", ASCENDING), ("session_id", ASCENDING)], skip=skip
        ).limit(limit)
        return [doc async for doc in cursor]

    async def count_anchorings(self, query: Doc) -> int:
        """How many anchorings match."""
        return await self.anchorings.count_documents(query)

    async def oldest_anchoring(self, status: str) -> Doc | None:
        """The oldest anchoring in a state."""
        return await self.anchorings.find_one({"status": status}, sort=[("submit_time", ASCENDING)])

    # -- consensus state ----------------------------------------------------------------

    async def ballot(self, height: int, phase: str, round_: int) -> Doc | None:
        """This validator's vote of a phase and round at a height."""
        return await self.ballots.find_one({"_id": f"{height}:{phase}:{round_}"})

    async def insert_ballot(self, doc: Doc) -> None:
        """Records a vote before it is sent (one per height, phase and round)."""
        await self.ballots.insert_one(
            {"_id": f"{doc['height']}:{doc['phase']}:{doc['round']}", **doc}
        )

    async def voting_state(self, height: int) -> Doc | None:
        """The voting state of a height: highest round voted in, and the lock."""
        return await self.voting.find_one({"_id": str(height)})

    async def save_voting_state(self, height: int, changes: Doc) -> None:
        """Updates the voting state of a height."""
        await self.voting.update_one(
            {"_id": str(height)}, {"$set": {"height": height, **changes}}, upsert=True
        )

    async def forget_votes_below(self, height: int) -> None:
        """Drops the voting state of heights that are final."""
        await self.voting.delete_many({"height": {"$lt": height}})
        await self.ballots.delete_many({"height": {"$lt": height}})

    async def insert_round(self, doc: Doc) -> None:
        """Records a consensus round."""
        await self.rounds.insert_one({"_id": doc["round_id"], **doc})

    async def round_docs(self, where: RoundFilter, *, skip: int, limit: int) -> list[Doc]:
        """Rounds, newest first."""
        cursor = self.rounds.find(
            where.query(), sort=[("height", DESCENDING), ("round", DESCENDING)], skip=skip
        ).limit(limit)
        return [doc async for doc in cursor]

    async def count_rounds(self, where: RoundFilter) -> int:
        """How many rounds match."""
        return await self.rounds.count_documents(where.query())

    # -- task proofs and votes received ------------------------------------------------

    async def insert_record(self, kind: RecordKind, doc: Doc) -> None:
        """Records a received signed record (one per key)."""
        await self.db[self.prefix + kind.collection].insert_one({"_id": kind.key(doc), **doc})

    async def record(self, kind: RecordKind, doc: Doc) -> Doc | None:
        """The stored record with the key of ``doc``."""
        return await self.db[self.prefix + kind.collection].find_one({"_id": kind.key(doc)})

    async def set_record_tx(self, kind: RecordKind, doc: Doc, tx_hash: str) -> None:
        """Notes the transaction that carries a record."""
        await self.db[self.prefix + kind.collection].update_one(
            {"_id": kind.key(doc)}, {"$set": {"tx_hash": tx_hash}}
        )

    async def delete_record(self, kind: RecordKind, doc: Doc) -> None:
        """Forgets a record that could not be put on the chain."""
        await self.db[self.prefix + kind.collection].delete_one(
            {"_id": kind.key(doc), kind.id_field: doc[kind.id_field]}
        )


@dataclass(frozen=True)
class RecordKind:
    """A kind of signed record the validator receives and puts on the chain: one per key."""

    collection: str
    key_fields: tuple[str, ...]
    id_field: str

    def key(self, doc: Doc) -> str:
        """The ``_id`` of a record: its key fields joined."""
        return ":".join(str(doc[name]) for name in self.key_fields)


TASK_PROOFS = RecordKind(schema.TASK_PROOFS, ("node_id", "slot", "task_type"), "proof_id")
VOTES = RecordKind(schema.VOTES, ("voter_id", "vote_type", "target_id"), "vote_id")
POOT_VOTES = RecordKind(schema.VOTES, ("voter_id", "vote_type", "target_id", "slot"), "vote_id")
"""PoOT validation votes: one per voter, target and task slot."""

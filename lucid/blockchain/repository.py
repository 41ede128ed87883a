"""MongoDB access of one validator: blocks, transactions, anchorings, votes, trees.

Stored forms are plain documents that name every field, so an edit made in the
database shows in what the chain serves and in ``lucid chain verify``: a block is
rebuilt from its document (header fields, signatures, approvals), a transaction
from its canonical encoding (stored as text), nothing from a cached copy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from lucid.blockchain.v1 import blockchain_pb2 as pb
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from lucid.blockchain import schema, transactions
from lucid.blockchain.transactions import CheckedTransaction

Doc = dict[str, Any]

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


def stamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A stored time as a Timestamp."""
    if moment is None:
        return None
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(utc(moment))  # type: ignore[arg-type]
    return result


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
    header = pb.BlockHeader(
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
            approve_time=stamp(a.get("approve_time")),
        )
    final_time = stamp(doc.get("final_time"))
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
        value = stamp(doc.get(name))
        if value is not None:
            getattr(tx, name).CopyFrom(value)
    return tx


class Repository:
    """The collections of one validator."""

    def __init__(self, db: AsyncDatabase[Doc], prefix: str) -> None:
        self.db = db
        self.prefix = prefix
        self.blocks: AsyncCollection[Doc] = db[prefix + schema.BLOCKS]
        self.transactions: AsyncCollection[Doc] = db[prefix + schema.TRANSACTIONS]
        self.anchorings: AsyncCollection[Doc] = db[prefix + schema.ANCHORINGS]
        self.merkle_trees: AsyncCollection[Doc] = db[prefix + schema.MERKLE_TREES]
        self.merkle_leaves: AsyncCollection[Doc] = db[prefix + schema.MERKLE_LEAVES]
        self.ballots: AsyncCollection[Doc] = db[prefix + schema.BALLOTS]
        self.voting: AsyncCollection[Doc] = db[prefix + schema.VOTING]
        self.rounds: AsyncCollection[Doc] = db[prefix + schema.ROUNDS]
        self.task_proofs: AsyncCollection[Doc] = db[prefix + schema.TASK_PROOFS]
        self.votes: AsyncCollection[Doc] = db[prefix + schema.VOTES]

    # -- blocks ------------------------------------------------------------------

    async def tip_doc(self) -> Doc | None:
        """The highest stored block."""
        return await self.blocks.find_one({}, sort=[("height", DESCENDING)])

    async def block_doc(
        self, *, height: int | None = None, block_hash: str | None = None
    ) -> Doc | None:
        """One block by height or hash."""
        query: Doc = {"height": height} if height is not None else {"hash": block_hash}
        return await self.blocks.find_one(query)

    async def insert_block(self, doc: Doc) -> None:
        """Stores a final block (unique height and hash)."""
        await self.blocks.insert_one(doc)

    async def block_docs(
        self, query: Doc, *, descending: bool, skip: int = 0, limit: int = 0
    ) -> list[Doc]:
        """Blocks matching a query, by height."""
        cursor = self.blocks.find(
            query, sort=[("height", DESCENDING if descending else ASCENDING)], skip=skip
        )
        if limit:
            cursor = cursor.limit(limit)
        return [doc async for doc in cursor]

    async def count_blocks(self, query: Doc) -> int:
        """How many blocks match."""
        return await self.blocks.count_documents(query)

    async def iter_blocks(self, from_height: int = 0, batch: int = 200) -> AsyncIterator[Doc]:
        """Every block from a height on, by height."""
        height = from_height
        while True:
            docs = await self.block_docs(
                {"height": {"$gte": height}}, descending=False, limit=batch
            )
            for doc in docs:
                yield doc
            if len(docs) < batch:
                return
            height = int(docs[-1]["height"]) + 1

    async def proposers_since(self, height: int) -> list[str]:
        """The proposers of the blocks from a height on."""
        docs = self.blocks.find({"height": {"$gte": height}}, {"proposer_id": 1})
        return [doc["proposer_id"] async for doc in docs]

    # -- transactions --------------------------------------------------------------

    async def tx_doc(self, tx_hash: str) -> Doc | None:
        """One transaction."""
        return await self.transactions.find_one({"tx_hash": tx_hash})

    async def tx_docs(self, tx_hashes: Iterable[str]) -> dict[str, Doc]:
        """Transactions by hash."""
        hashes = list(tx_hashes)
        if not hashes:
            return {}
        found: dict[str, Doc] = {}
        async for doc in self.transactions.find({"tx_hash": {"$in": hashes}}):
            found[doc["tx_hash"]] = doc
        return found

    async def insert_tx(self, doc: Doc) -> None:
        """Stores a new transaction (unique hash)."""
        await self.transactions.insert_one(doc)

    async def ensure_tx(self, doc: Doc) -> None:
        """Stores a transaction unless its hash is known."""
        await self.transactions.update_one(
            {"tx_hash": doc["tx_hash"]}, {"$setOnInsert": doc}, upsert=True
        )

    async def confirm_txs(
        self, block_height: int, block_hash: str, tx_hashes: Sequence[str], now: datetime
    ) -> None:
        """Marks a final block's transactions confirmed with their position."""
        for index, tx_hash in enumerate(tx_hashes):
            await self.transactions.update_one(
                {"tx_hash": tx_hash},
                {
                    "$set": {
                        "status": CONFIRMED,
                        "block_height": block_height,
                        "block_hash": block_hash,
                        "transaction_index": index,
                        "confirm_time": now,
                        "error_message": "",
                    }
                },
            )

    async def pending_docs(self, *, tx_type: int = 0, skip: int = 0, limit: int = 0) -> list[Doc]:
        """Pending transactions, oldest first."""
        query: Doc = {"status": PENDING}
        if tx_type:
            query["type"] = tx_type
        cursor = self.transactions.find(
            query, sort=[("submit_time", ASCENDING), ("tx_hash", ASCENDING)], skip=skip
        )
        if limit:
            cursor = cursor.limit(limit)
        return [doc async for doc in cursor]

    async def count_pending(self, *, tx_type: int = 0, work_only: bool = False) -> int:
        """How many transactions are pending (``work_only``: not counting uptime beacons)."""
        query: Doc = {"status": PENDING}
        if tx_type:
            query["type"] = tx_type
        if work_only:
            query["rides_along"] = False
        return await self.transactions.count_documents(query)

    async def drop_tx(self, tx_hash: str, reason: str, status: str = DROPPED) -> None:
        """Takes a pending transaction out of the pool."""
        await self.transactions.update_one(
            {"tx_hash": tx_hash, "status": PENDING},
            {"$set": {"status": status, "error_message": reason}},
        )

    async def confirmed_among(self, tx_hashes: Iterable[str]) -> set[str]:
        """Which of these transactions are already in a final block."""
        hashes = list(tx_hashes)
        if not hashes:
            return set()
        docs = self.transactions.find(
            {"tx_hash": {"$in": hashes}, "status": CONFIRMED}, {"tx_hash": 1}
        )
        return {doc["tx_hash"] async for doc in docs}

    async def anchored_sessions_among(self, session_ids: Iterable[str]) -> dict[str, str]:
        """Which of these sessions already have an anchor in a final block (→ its tx hash)."""
        ids = list(session_ids)
        if not ids:
            return {}
        docs = self.transactions.find(
            {"session_id": {"$in": ids}, "status": CONFIRMED}, {"session_id": 1, "tx_hash": 1}
        )
        return {doc["session_id"]: doc["tx_hash"] async for doc in docs}

    async def pending_anchor_of(self, session_id: str) -> Doc | None:
        """The pending anchor transaction of a session, if any."""
        return await self.transactions.find_one({"session_id": session_id, "status": PENDING})

    async def task_facts(self, since: datetime, until: datetime, max_height: int) -> list[Doc]:
        """Task proofs in final blocks up to a height, with proof times in a window."""
        docs = self.transactions.find(
            {
                "status": CONFIRMED,
                "block_height": {"$lte": max_height},
                "task.proof_time": {"$gt": since, "$lte": until},
            },
            {"task": 1},
        )
        return [doc["task"] async for doc in docs]

    # -- anchorings ------------------------------------------------------------------

    async def anchoring(self, session_id: str) -> Doc | None:
        """A session's anchoring."""
        return await self.anchorings.find_one({"session_id": session_id})

    async def insert_anchoring(self, doc: Doc) -> None:
        """Stores a new anchoring (one per session)."""
        await self.anchorings.insert_one(doc)

    async def replace_anchoring(self, session_id: str, states: Sequence[str], doc: Doc) -> bool:
        """Replaces a session's anchoring if it is in one of ``states``."""
        outcome = await self.anchorings.replace_one(
            {"session_id": session_id, "status": {"$in": list(states)}}, doc
        )
        return outcome.modified_count == 1

    async def update_anchoring(self, query: Doc, changes: Doc) -> Doc | None:
        """Changes the anchoring matching a query; the new document."""
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
        return await self.ballots.find_one({"height": height, "phase": phase, "round": round_})

    async def insert_ballot(self, doc: Doc) -> None:
        """Records a vote before it is sent (unique per height, phase and round)."""
        await self.ballots.insert_one(doc)

    async def voting_state(self, height: int) -> Doc | None:
        """The voting state of a height: highest round voted in, and the lock."""
        return await self.voting.find_one({"height": height})

    async def save_voting_state(self, height: int, changes: Doc) -> None:
        """Updates the voting state of a height."""
        await self.voting.update_one({"height": height}, {"$set": changes}, upsert=True)

    async def forget_votes_below(self, height: int) -> None:
        """Drops the voting state of heights that are final."""
        await self.voting.delete_many({"height": {"$lt": height}})
        await self.ballots.delete_many({"height": {"$lt": height}})

    async def insert_round(self, doc: Doc) -> None:
        """Records a consensus round."""
        await self.rounds.insert_one(doc)

    async def round_docs(self, query: Doc, *, skip: int, limit: int) -> list[Doc]:
        """Rounds, newest first."""
        cursor = self.rounds.find(
            query, sort=[("height", DESCENDING), ("round", DESCENDING)], skip=skip
        ).limit(limit)
        return [doc async for doc in cursor]

    async def count_rounds(self, query: Doc) -> int:
        """How many rounds match."""
        return await self.rounds.count_documents(query)

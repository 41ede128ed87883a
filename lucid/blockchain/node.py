"""One validator, wired: key, validator set, ledger, consensus, sync and chores.

The server starts serving at once; the validator becomes ready when every validator
of the set has published its public key and its chain is open (genesis stored or
checked). Until then its rpcs answer ``LUCID_ERR_4009`` (chain unavailable). Once
ready it runs, side by side: the consensus loop, the catch-up loop, its uptime
beacon (one per PoOT task slot) and the expiry of anchorings that waited too long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import nacl.signing
from google.protobuf import timestamp_pb2
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.blockchain import poot, transactions
from lucid.blockchain.config import ChainConfig
from lucid.blockchain.consensus import Engine
from lucid.blockchain.keys import KeyDirectory, ValidatorSet, public_key_hex, sign_hex
from lucid.blockchain.ledger import ChainError, Ledger
from lucid.blockchain.peers import Peers
from lucid.blockchain.store.chain import TASK_PROOFS, Doc, RecordKind, Repository
from lucid.blockchain.sync import Syncer
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.config import Settings
from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.blockchain.node")


@dataclass
class Ready:
    """The parts of a validator that exist once it is ready."""

    validators: ValidatorSet
    ledger: Ledger
    engine: Engine
    syncer: Syncer


class ChainNode:
    """One validator process's chain."""

    def __init__(
        self,
        settings: Settings,
        config: ChainConfig,
        *,
        db: AsyncDatabase[Doc],
        key: nacl.signing.SigningKey,
        keys: KeyDirectory,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.config = config
        self.repo = Repository(db, config.collection_prefix)
        self.key = key
        self.public_key = public_key_hex(key)
        self.keys = keys
        self.clock = clock
        self.peers = Peers(settings, config)
        self.ready: Ready | None = None
        self.error = ""
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def validator_id(self) -> str:
        """This validator's id."""
        return self.config.validator_id

    def require(self) -> Ready:
        """The ready validator; raises ``LUCID_ERR_4009`` while it is not."""
        if self.ready is None:
            reason = self.error or "waiting for the validator set and the chain to open"
            raise LucidError(
                ErrorCode.ERROR_CODE_CHAIN_UNAVAILABLE,
                f"validator {self.validator_id} is not ready: {reason}",
                retry_after_s=1.0,
            )
        return self.ready

    def start(self) -> None:
        """Starts the validator in the background (after the database answers)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stops the background work and closes the peer channels."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.peers.close()

    async def _open(self) -> Ready:
        validators = await self.keys.wait_for_set(self.config.validator_ids)
        if validators.key_of(self.validator_id) != self.public_key:
            raise ChainError("the published key of this validator is not its own")
        while True:
            ledger = Ledger(self.repo, validators, self.config, self.clock)
            try:
                await ledger.open()
                break
            except ChainError:
                raise
            except Exception as exc:  # the database may still be starting
                self.error = f"cannot open the chain: {exc}"
                log.warning("cannot open the chain yet", exc_info=True)
                await asyncio.sleep(1.0)
        syncer_box: list[Syncer] = []
        engine = Engine(
            config=self.config,
            ledger=ledger,
            key=self.key,
            validators=validators,
            peers=self.peers,
            request_sync=lambda: syncer_box[0].nudge() if syncer_box else None,
        )
        syncer = Syncer(engine, ledger, self.peers, self.config.sync_interval_s)
        syncer_box.append(syncer)
        ledger.on_new_transaction.append(lambda checked: self.peers.relay([checked.signed]))
        return Ready(validators, ledger, engine, syncer)

    async def _run(self) -> None:
        try:
            ready = await self._open()
        except ChainError as exc:
            self.error = str(exc)
            log.error("the validator cannot follow this chain", extra={"error": str(exc)})
            return
        self.ready = ready
        self.error = ""
        log.info(
            "validator ready",
            extra={"validator": self.validator_id, "height": ready.ledger.tip.height},
        )
        await asyncio.gather(
            ready.engine.run(), ready.syncer.run(), self._beacons(), self._expiry()
        )

    async def _beacons(self) -> None:
        """Records this validator's uptime once per task slot (its own PoOT task proofs)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.config.beacon_interval_s)
            now = time.monotonic()
            try:
                await self.beacon(int(min(now - last, poot.TASK_SLOT_S)))
                last = now
            except LucidError as exc:
                log.info("uptime beacon not recorded", extra={"reason": exc.message})
            except Exception:
                log.warning("uptime beacon failed", exc_info=True)

    async def beacon(self, seconds_up: int) -> Doc:
        """Records this validator's uptime beacon of the current task slot (once per slot)."""
        now = self.clock.now()
        node_id = poot.validator_node_id(self.public_key)
        key = {"node_id": node_id, "slot": poot.task_slot(now), "task_type": poot.UPTIME_BEACON}
        existing = await self.repo.record(TASK_PROOFS, key)
        if existing is not None:
            return existing
        proof = cpb.TaskProof(
            node_id=node_id,
            slot=poot.task_slot(now),
            task_type=poot.UPTIME_BEACON,
            value=max(0, seconds_up),
            public_key=self.public_key,
        )
        proof.proof_time.FromDatetime(now)
        proof.signature = sign_hex(self.key, poot.proof_message(proof))
        doc, _ = await self.submit_task_proof(proof)
        return doc

    async def _expiry(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.config.anchoring_timeout_s / 4))
            ready = self.ready
            if ready is None:
                continue
            try:
                await ready.ledger.expire_anchorings()
            except Exception:
                log.warning("anchoring expiry failed", exc_info=True)

    # -- submissions shared by servicers ----------------------------------------------

    def sign_body(self, body: pb.TransactionBody) -> pb.SignedTransaction:
        """Signs a transaction as this validator."""
        return transactions.sign(body, self.validator_id, self.key)

    def stamp(self) -> timestamp_pb2.Timestamp:
        """Now, as a Timestamp."""
        value = timestamp_pb2.Timestamp()
        value.FromDatetime(self.clock.now())
        return value

    async def submit_record(
        self, kind: RecordKind, doc: Doc, body: pb.TransactionBody, conflict: str
    ) -> tuple[Doc, bool]:
        """Stores a received signed record (a task proof, a vote) and puts it on the chain in
        a transaction this validator signs; (stored record, new). The identical record sent
        again returns the stored one; another one under the same key is refused."""
        ready = self.require()
        try:
            await self.repo.insert_record(kind, doc)
        except DuplicateKeyError:
            existing = await self.repo.record(kind, doc)
            if existing is not None and existing["signature"] == doc["signature"]:
                return existing, False
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                conflict,
                metadata={kind.id_field: existing[kind.id_field] if existing else ""},
            ) from None
        body.nonce = doc[kind.id_field]
        body.create_time.CopyFrom(self.stamp())
        try:
            tx, _ = await ready.ledger.accept(self.sign_body(body))
        except LucidError:
            await self.repo.delete_record(kind, doc)
            raise
        await self.repo.set_record_tx(kind, doc, tx["tx_hash"])
        return {**doc, "tx_hash": tx["tx_hash"]}, True

    async def submit_task_proof(self, proof: cpb.TaskProof) -> tuple[Doc, bool]:
        """Records a node's task proof and puts it on the chain; (stored proof, new)."""
        self.require()
        facts = poot.check_task_proof(proof)
        doc: Doc = {
            "proof_id": new_id(),
            **facts.as_doc(),
            "signature": proof.signature,
            "public_key": proof.public_key,
            "tx_hash": "",
            "submit_time": self.clock.now(),
        }
        body = pb.TransactionBody(
            type=pb.TRANSACTION_TYPE_SYSTEM,
            system=pb.SystemPayload(
                action=transactions.TASK_PROOF_ACTION, parameters=poot.proof_parameters(proof)
            ),
        )
        return await self.submit_record(
            TASK_PROOFS,
            doc,
            body,
            f"node {proof.node_id} already proved this task in slot {proof.slot}",
        )

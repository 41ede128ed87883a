"""Helpers of the chain tests: signed transactions, anchor requests, waiting for blocks."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import nacl.signing
from google.protobuf import timestamp_pb2
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from lucid.blockchain import blocks, schema, transactions
from lucid.blockchain.config import ChainConfig, validator_id
from lucid.blockchain.consensus import Engine
from lucid.blockchain.keys import (
    KeyDirectory,
    ValidatorInfo,
    ValidatorSet,
    public_key_hex,
    sign_hex,
)
from lucid.blockchain.ledger import Ledger
from lucid.blockchain.peers import Peers
from lucid.blockchain.store.chain import Repository
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import anchoring_pb2_grpc, blockchain_pb2_grpc, consensus_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import canonical, manifestdoc
from lucid.lib.clock import SystemClock
from lucid.lib.sealing import Sealer
from lucid.runtime.config import Settings
from lucid.runtime.schema import ensure_schema
from tests.waiting import eventually

T = TypeVar("T")


def now_stamp(at: datetime | None = None) -> timestamp_pb2.Timestamp:
    """``at`` (default: now), as a Timestamp."""
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(at or datetime.now(UTC))
    return value


def data_body(
    tag: str = "", *, description: str = "test record", at: datetime | None = None
) -> pb.TransactionBody:
    """A data-storage transaction body, created ``at`` (default: now)."""
    return pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_DATA_STORAGE,
        data_storage=pb.DataStoragePayload(
            data_hash="ab" * 32, size_bytes=1024, content_type="text/plain", description=description
        ),
        fee_micros=1_000_000,
        create_time=now_stamp(at),
        nonce=tag or uuid.uuid4().hex,
    )


def signed(
    body: pb.TransactionBody, key: nacl.signing.SigningKey | None = None
) -> pb.SignedTransaction:
    """A body signed by a key (a fresh one unless given)."""
    return transactions.sign(body, "operator", key or nacl.signing.SigningKey.generate())


def anchor_request(
    session_id: str | None = None,
    root: str | None = None,
    key: nacl.signing.SigningKey | None = None,
    owner: str | None = None,
) -> apb.AnchorSessionRequest:
    """An AnchorSession request with a correctly signed manifest."""
    key = key or nacl.signing.SigningKey.generate()
    session_id = session_id or str(uuid.uuid4())
    root = root or uuid.uuid4().hex * 2
    owner = owner or str(uuid.uuid4())
    manifest_id = str(uuid.uuid4())
    generated = manifestdoc.truncate_ms(datetime.now(UTC))
    checksum = "cd" * 32
    document = manifestdoc.signed_document(
        manifest_id=manifest_id,
        manifest_version="1.0",
        session_id=session_id,
        owner_user_id=owner,
        merkle_root=root,
        total_checksum=checksum,
        generate_time=generated,
    )
    data = apb.ManifestData(
        chunk_count=3,
        total_size_bytes=3 * 1024,
        manifest_id=manifest_id,
        hash_algorithm=pb.HASH_ALGORITHM_SHA256,
        manifest_version="1.0",
        owner_user_id=owner,
        total_checksum=checksum,
    )
    data.create_time.FromDatetime(generated)
    return apb.AnchorSessionRequest(
        session_id=session_id,
        manifest_data=data,
        merkle_root=root,
        user_signature=bytes(key.sign(document).signature).hex(),
        signer_public_key=bytes(key.verify_key).hex(),
    )


def validator_key(settings: Settings, index: int = 0) -> nacl.signing.SigningKey:
    """A validator's signing key, unsealed from its key file."""
    config = ChainConfig.of(settings.replace(validator_index=index))
    return KeyDirectory(config.keys_dir, Sealer(settings.sealing_passphrase())).load_or_create(
        validator_id(index)
    )


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 30.0, interval_s: float = 0.1
) -> T:
    """Polls ``probe`` until it returns something true (a server that is not up yet,
    UNAVAILABLE or DEADLINE_EXCEEDED, counts as not yet); fails after ``timeout_s``."""

    async def answered() -> T | None:
        try:
            return await probe()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            return None

    return await eventually(answered, timeout_s=timeout_s, interval_s=interval_s)  # type: ignore[return-value]


class ChainStubs:
    """The chain's stubs on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.chain = blockchain_pb2_grpc.BlockchainServiceStub(channel)
        self.anchoring = anchoring_pb2_grpc.AnchoringServiceStub(channel)
        self.consensus = consensus_pb2_grpc.ConsensusServiceStub(channel)

    async def height(self) -> int:
        """The tip height."""
        return (await self.chain.GetChainHeight(pb.GetChainHeightRequest(), timeout=5)).height

    async def ready(self) -> int | None:
        """The tip height once the validator is ready (``None`` before)."""
        try:
            return (await self.height()) + 1
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                return None
            raise


@dataclass
class Trio:
    """Three validators and their keys."""

    engines: list[Engine]
    keys: list[nacl.signing.SigningKey]
    db: AsyncDatabase[dict[str, Any]]

    def round_led_by(self, leader: int, below: int | None = None) -> int:
        """A started round of the next height that ``validator-<leader>`` leads (-1: none yet)."""
        ledger = self.engines[0].ledger
        assert ledger._schedule is not None
        schedule = ledger._schedule[1]
        round_ = ledger.round_at() if below is None else below - 1
        while round_ >= 0 and schedule.leader(round_) != f"validator-{leader}":
            round_ -= 1
        return round_

    async def started_round_of(self, leader: int) -> int:
        """Waits for a started round of the next height led by ``validator-<leader>``."""
        for _ in range(500):
            round_ = self.round_led_by(leader)
            if round_ >= 0:
                return round_
            await asyncio.sleep(0.02)
        raise AssertionError(f"no round of validator-{leader} started")

    def block(self, proposer: int, round_: int, nonce: str = "") -> pb.Block:
        """A fresh block of the next height by ``proposer`` in ``round_``."""
        ledger = self.engines[0].ledger
        checked = [
            transactions.check(signed(data_body(nonce or uuid.uuid4().hex)), ledger.validators)
        ]
        return blocks.build(
            parent=ledger.tip,
            transactions=checked,
            proposer_id=f"validator-{proposer}",
            key=self.keys[proposer],
            slot=round_,
            block_time_ns=ledger.now_ns(),
        )

    async def prevotes(
        self, block: pb.Block, round_: int, voters: list[int], leader: int | None = None
    ) -> list[cpb.ProposeBlockResponse]:
        """Asks ``voters`` to prevote ``block`` in ``round_``."""
        leader = int(block.header.proposer_id.rsplit("-", 1)[1]) if leader is None else leader
        request = cpb.ProposeBlockRequest(
            block=block, round=round_, leader_id=f"validator-{leader}"
        )
        return [await self.engines[v].handle_propose(request) for v in voters]

    def certificate(
        self, block: pb.Block, round_: int, voters: list[int]
    ) -> cpb.PrevoteCertificate:
        """Prevotes of ``voters`` for ``block`` in ``round_`` (signed directly)."""
        height = block.header.height
        return cpb.PrevoteCertificate(
            height=height,
            round=round_,
            block_hash=block.hash,
            prevotes=[
                cpb.Prevote(
                    validator_id=f"validator-{v}",
                    public_key=public_key_hex(self.keys[v]),
                    height=height,
                    round=round_,
                    block_hash=block.hash,
                    signature=sign_hex(
                        self.keys[v], canonical.prevote_message(height, round_, block.hash)
                    ),
                )
                for v in voters
            ],
        )

    async def approvals(
        self, block: pb.Block, round_: int, cert: cpb.PrevoteCertificate, voters: list[int]
    ) -> list[cpb.ApproveBlockResponse]:
        """Asks ``voters`` to approve."""
        request = cpb.ApproveBlockRequest(block=block, round=round_, certificate=cert)
        return [await self.engines[v].handle_approve(request) for v in voters]

    async def finalize(self, proposer: int, voters: list[int] = [0, 1]) -> pb.Block:  # noqa: B006
        """Makes a block of ``proposer`` final on every validator (the test is the leader)."""
        round_ = await self.started_round_of(proposer)
        block = self.block(proposer, round_)
        cert = self.certificate(block, round_, voters)
        answers = await self.approvals(block, round_, cert, voters)
        assert all(a.approved for a in answers), [a.reason for a in answers]
        final = pb.Block()
        final.CopyFrom(block)
        final.approvals.extend(a.approval for a in answers)
        for engine in self.engines:
            ok, reason = await engine.commit_final(final)
            assert ok, reason
        for engine in self.engines:
            await engine.ledger.schedule()
        return final


@contextlib.asynccontextmanager
async def open_trio(settings: Settings, **timing: float) -> AsyncIterator[Trio]:
    """Three in-process validators with their own collections in a fresh database, no network
    (``timing`` overrides ``block_interval_s`` and ``leader_timeout_s``)."""
    keys = [nacl.signing.SigningKey.generate() for _ in range(3)]
    validators = ValidatorSet(
        tuple(ValidatorInfo(f"validator-{i}", public_key_hex(k)) for i, k in enumerate(keys))
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    db = client[f"lucid_consensus_{uuid.uuid4().hex[:10]}"]
    engines = []
    for i, key in enumerate(keys):
        config = ChainConfig.of(settings.replace(validators=3, validator_index=i), **timing)
        await ensure_schema(db, schema.collections(config.collection_prefix))
        ledger = Ledger(Repository(db, config.collection_prefix), validators, config, SystemClock())
        await ledger.open()
        await ledger.schedule()
        engines.append(
            Engine(
                config=config,
                ledger=ledger,
                key=key,
                validators=validators,
                peers=Peers(settings, config),
            )
        )
    try:
        yield Trio(engines, keys, db)
    finally:
        for engine in engines:
            await engine.peers.close()
        await client.drop_database(db.name)
        await client.close()

"""Helpers of the chain tests: signed transactions, anchor requests, waiting for blocks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import grpc
import nacl.signing
from google.protobuf import timestamp_pb2
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import anchoring_pb2_grpc, blockchain_pb2_grpc, consensus_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2 as pb

from lucid.blockchain import transactions
from lucid.blockchain.config import ChainConfig, validator_id
from lucid.blockchain.keys import KeyDirectory
from lucid.lib import manifestdoc
from lucid.lib.sealing import Sealer
from lucid.runtime.config import Settings

T = TypeVar("T")


def now_stamp() -> timestamp_pb2.Timestamp:
    """Now, as a Timestamp."""
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(datetime.now(UTC))
    return value


def data_body(tag: str = "", *, description: str = "test record") -> pb.TransactionBody:
    """A data-storage transaction body."""
    return pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_DATA_STORAGE,
        data_storage=pb.DataStoragePayload(
            data_hash="ab" * 32, size_bytes=1024, content_type="text/plain", description=description
        ),
        fee_micros=1_000_000,
        create_time=now_stamp(),
        nonce=tag or uuid.uuid4().hex,
    )


def signed(body: pb.TransactionBody, key: nacl.signing.SigningKey | None = None) -> pb.SignedTransaction:
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
    """Polls ``probe`` until it returns something true; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            last = None
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")


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

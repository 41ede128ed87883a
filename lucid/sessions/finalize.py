"""Finalization: stopped → processing → completed | failed.

On stop the session's manifest is built (chunks 1…n in order, sizes, hashes,
algorithms, the RFC 9162 root over the blob hashes, total checksum) and signed
with the cluster's Ed25519 key; then the root is anchored through the chain's
``AnchorSession`` (mTLS, as the sessions identity) and followed with
``GetSessionAnchoring`` until its block is final: only then is the session
``completed``. Sessions waiting for a block do not each poll the chain: one watcher
asks for the chain's height (``GetChainHeight``) every ``anchor_poll_s`` while anyone
waits, and a new final block wakes them all to ask once about their anchor (a
session also asks after ``anchor_recheck_s`` without a block: expiries need none).
An attempt fails when the chain refuses or cannot be reached, or when the anchoring
fails, expires or is not final within ``anchor_timeout_s``; after ``anchor_attempts``
(3) failed attempts the session is ``failed`` and its chunks stay readable. A transient
store error (``runtime.storeerrors``) never counts as an attempt nor fails a session:
the step is tried again with backoff. A background worker drives every session in
stopped or processing, so work left by a crash is picked up after a restart; a lease
keeps two instances from driving the same session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
from pymongo.errors import DuplicateKeyError

from lucid.blockchain.v1 import anchoring_pb2, anchoring_pb2_grpc, blockchain_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2 as chain_pb2
from lucid.lib import manifestdoc, merkle
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.breaker import not_sent
from lucid.runtime.channels import Channels, UnavailableClusterError
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.storeerrors import Backoff, is_transient, store_busy
from lucid.sessions import blobformat
from lucid.sessions.config import SessionsConfig
from lucid.sessions.keys import KeyStore
from lucid.sessions.service import PIPELINE_STOPPED, Sessions
from lucid.sessions.states import State
from lucid.sessions.store.repository import Doc, Repository

log = logging.getLogger("lucid.sessions.finalize")

HASH_ALGORITHM = "sha256"
CHAIN_CALL_TIMEOUT_S = 10.0
STORE_RETRY_INITIAL_S = 0.05
STORE_RETRY_MAX_S = 2.0
PENDING = "pending"
PROCESSING = "processing"
CONFIRMED = "confirmed"
FAILED = "failed"
EXPIRED = "expired"
_STATUS_NAMES = {
    anchoring_pb2.ANCHORING_STATUS_PENDING: PENDING,
    anchoring_pb2.ANCHORING_STATUS_PROCESSING: PROCESSING,
    anchoring_pb2.ANCHORING_STATUS_CONFIRMED: CONFIRMED,
    anchoring_pb2.ANCHORING_STATUS_FAILED: FAILED,
    anchoring_pb2.ANCHORING_STATUS_EXPIRED: EXPIRED,
}


def leaf_hashes(chunks: list[Doc]) -> list[bytes]:
    """The RFC 9162 leaf hashes of a session's chunks (entry = SHA-256 of the blob)."""
    return [merkle.leaf_hash(bytes.fromhex(c["merkle_hash"])) for c in chunks]


def signed_document_of(manifest: Doc) -> bytes:
    """The bytes a stored manifest's signature covers."""
    return manifestdoc.signed_document(
        manifest_id=manifest["_id"],
        manifest_version=manifest["manifest_version"],
        session_id=manifest["session_id"],
        owner_user_id=manifest["owner_user_id"],
        merkle_root=manifest["merkle_root"],
        total_checksum=manifest["total_checksum"],
        generate_time=manifest["generate_time"],
    )


class AnchorClient:
    """The chain's anchoring rpcs, called as the sessions service."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def _stub(self) -> anchoring_pb2_grpc.AnchoringServiceStub:
        return await self._channels.stub("blockchain", anchoring_pb2_grpc.AnchoringServiceStub)

    async def anchor(
        self, request: anchoring_pb2.AnchorSessionRequest
    ) -> anchoring_pb2.AnchorSessionResponse:
        """AnchorSession."""
        response: anchoring_pb2.AnchorSessionResponse = await (await self._stub()).AnchorSession(
            request, timeout=CHAIN_CALL_TIMEOUT_S
        )
        return response

    async def height(self) -> int:
        """GetChainHeight: the chain's highest final block."""
        stub = await self._channels.stub("blockchain", blockchain_pb2_grpc.BlockchainServiceStub)
        response: chain_pb2.GetChainHeightResponse = await stub.GetChainHeight(
            chain_pb2.GetChainHeightRequest(), timeout=CHAIN_CALL_TIMEOUT_S
        )
        return int(response.final_height)

    async def status(self, session_id: str) -> anchoring_pb2.SessionAnchoring:
        """GetSessionAnchoring."""
        response: anchoring_pb2.GetSessionAnchoringResponse = await (
            await self._stub()
        ).GetSessionAnchoring(
            anchoring_pb2.GetSessionAnchoringRequest(session_id=session_id),
            timeout=CHAIN_CALL_TIMEOUT_S,
        )
        return response.anchoring

    async def proof(self, session_id: str) -> anchoring_pb2.GetAnchoringProofResponse:
        """GetAnchoringProof."""
        response: anchoring_pb2.GetAnchoringProofResponse = await (
            await self._stub()
        ).GetAnchoringProof(
            anchoring_pb2.GetAnchoringProofRequest(session_id=session_id),
            timeout=CHAIN_CALL_TIMEOUT_S,
        )
        return response

    async def verify(
        self, session_id: str, merkle_root: str, block_height: int = 0
    ) -> anchoring_pb2.VerifyAnchoringResponse:
        """VerifyAnchoring."""
        response: anchoring_pb2.VerifyAnchoringResponse = await (
            await self._stub()
        ).VerifyAnchoring(
            anchoring_pb2.VerifyAnchoringRequest(
                session_id=session_id, merkle_root=merkle_root, block_height=block_height
            ),
            timeout=CHAIN_CALL_TIMEOUT_S,
        )
        return response


class TipWatch:
    """The chain's final height as last seen, and a wait for it to move past a height.

    One poller reads the height every ``poll_s`` while at least one session waits, so
    N sessions waiting for their anchor's block cost one cheap rpc per poll, not N
    anchoring reads and N store writes. Heights only grow: a session that read its
    anchoring after the watcher saw height h and found it not final waits for a
    height above h, and no final block can slip between the two reads unseen.
    """

    def __init__(self, read: Callable[[], Awaitable[int]], poll_s: float) -> None:
        self.height = -1
        """The highest final height seen (-1 before the first answer)."""
        self.reads = 0
        """Height reads made (for tests and status)."""
        self._read = read
        self._poll_s = poll_s
        self._moved = asyncio.Event()
        self._waiting = 0
        self._task: asyncio.Task[None] | None = None

    async def wait_past(self, height: int, timeout_s: float) -> bool:
        """Waits until the final height is above ``height``; False after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._waiting += 1
        if self._task is None:
            self._task = asyncio.create_task(self._poll())
        try:
            while self.height <= height:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._moved.wait(), remaining)
            return True
        finally:
            self._waiting -= 1

    async def _poll(self) -> None:
        try:
            while self._waiting > 0:
                try:
                    height = await self._read()
                    self.reads += 1
                except Exception:  # the chain is away: waiters recheck on their own
                    log.debug("chain height unavailable", exc_info=True)
                else:
                    if height > self.height:
                        self.height = height
                        moved, self._moved = self._moved, asyncio.Event()
                        moved.set()
                await asyncio.sleep(self._poll_s)
        finally:
            self._task = None

    async def stop(self) -> None:
        """Stops the poller."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details() or ''}".strip()
    return f"{type(exc).__name__}: {exc}"


class Finalizer:
    """Builds manifests and drives anchoring to a final block."""

    def __init__(
        self,
        repo: Repository,
        keys: KeyStore,
        *,
        clock: Clock,
        config: SessionsConfig,
        chain: AnchorClient,
        sessions: Sessions,
        instance_id: str,
    ) -> None:
        self.repo = repo
        self.keys = keys
        self.clock = clock
        self.config = config
        self.chain = chain
        self.sessions = sessions
        self.instance_id = instance_id
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self.tip = TipWatch(chain.height, config.anchor_poll_s)
        self._waits: dict[str, tuple[int, float]] = {}
        """Sessions whose last step wants a block above a height, or a pause of seconds."""

    # -- manifest -----------------------------------------------------------------

    async def ensure_manifest(self, session: Doc) -> Doc:
        """The session's manifest, built and signed on first call (and named by the
        session: the link is made again when a crash or a lost store came between
        storing the manifest and naming it)."""
        session_id = session["_id"]
        existing = await self.repo.manifest_of(session_id)
        if existing is not None:
            return await self._linked(session, existing)
        chunks = await self.repo.chunks_of(session_id)
        if not chunks:
            raise LucidError(
                ErrorCode.ERROR_CODE_SESSION_EMPTY,
                f"session {session_id} has no chunks, so nothing to anchor",
            )
        if [int(c["sequence_number"]) for c in chunks] != list(range(1, len(chunks) + 1)):
            raise LucidError(
                ErrorCode.ERROR_CODE_INCONSISTENT_STATE,
                f"the chunks of session {session_id} are not numbered 1…n",
            )
        root = merkle.root(leaf_hashes(chunks)).hex()
        checksum = manifestdoc.total_checksum(c["merkle_hash"] for c in chunks)
        signing = await self.keys.signing_key()
        master = await self.keys.master_key()
        level = int((session.get("recording") or {}).get("compression_level") or 0)
        manifest: Doc = {
            "_id": new_id(),
            "manifest_version": manifestdoc.MANIFEST_VERSION,
            "session_id": session_id,
            "owner_user_id": session["owner_user_id"],
            "merkle_root": root,
            "hash_algorithm": HASH_ALGORITHM,
            "chunk_count": len(chunks),
            "total_size_bytes": sum(int(c["stored_bytes"]) for c in chunks),
            "raw_size_bytes": sum(int(c["size_bytes"]) for c in chunks),
            "total_checksum": checksum,
            "generate_time": manifestdoc.truncate_ms(self.clock.now()),
            "compression": {
                "algorithm": blobformat.COMPRESSION,
                "level": level or blobformat.DEFAULT_ZSTD_LEVEL,
            },
            "encryption": {
                "algorithm": blobformat.AEAD,
                "key_derivation": blobformat.KEY_DERIVATION,
                "key_id": master.key_id,
                "blob_format_version": blobformat.FORMAT_VERSION,
            },
            "signer_public_key": bytes(signing.verify_key).hex(),
            "validation_status": "valid",
            "blockchain_anchored": False,
        }
        manifest["signature"] = signing.sign(signed_document_of(manifest)).signature.hex()
        try:
            await self.repo.insert_manifest(manifest)
        except DuplicateKeyError:
            stored = await self.repo.manifest_of(session_id)
            if stored is None:
                raise
            return await self._linked(session, stored)
        await self.repo.count_stage(
            session_id, {"stages.merkle_building.processed_count": len(chunks)}
        )
        return await self._linked(session, manifest)

    async def _linked(self, session: Doc, manifest: Doc) -> Doc:
        """``manifest``, once ``session`` names it and carries its Merkle root."""
        if (
            session.get("manifest_id") != manifest["_id"]
            or session.get("merkle_root") != manifest["merkle_root"]
        ):
            await self.repo.update_session(
                session["_id"],
                {"merkle_root": manifest["merkle_root"], "manifest_id": manifest["_id"]},
            )
        return manifest

    def anchor_request(self, manifest: Doc) -> anchoring_pb2.AnchorSessionRequest:
        """The AnchorSession request of a manifest."""
        data = anchoring_pb2.ManifestData(
            chunk_count=int(manifest["chunk_count"]),
            total_size_bytes=int(manifest["total_size_bytes"]),
            manifest_id=manifest["_id"],
            hash_algorithm=chain_pb2.HASH_ALGORITHM_SHA256,
            manifest_version=manifest["manifest_version"],
            owner_user_id=manifest["owner_user_id"],
            total_checksum=manifest["total_checksum"],
        )
        data.create_time.FromDatetime(manifest["generate_time"])
        return anchoring_pb2.AnchorSessionRequest(
            session_id=manifest["session_id"],
            manifest_data=data,
            merkle_root=manifest["merkle_root"],
            user_signature=manifest["signature"],
            signer_public_key=manifest["signer_public_key"],
        )

    # -- the worker ---------------------------------------------------------------

    def wake(self, session_id: str = "") -> None:
        """Asks the worker to look at sessions now (after a stop or a retry)."""
        self._wake.set()

    async def run(self) -> None:
        """Drives every unfinished session, forever."""
        while True:
            try:
                await self.sweep()
            except Exception:  # the store may be down; health reports that
                log.debug("finalization sweep failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.sweep_interval_s)
            self._wake.clear()

    async def sweep(self) -> None:
        """Starts a driver for each session in stopped or processing that has none."""
        query = {"state": {"$in": [State.STOPPED.value, State.PROCESSING.value]}}
        async for doc in self.repo.sessions_where(query, {"_id": 1}):
            session_id = doc["_id"]
            if session_id not in self._running:
                task = asyncio.create_task(self.drive(session_id))
                self._running[session_id] = task
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for session_id, running in list(self._running.items()):
            if running is task:
                del self._running[session_id]

    async def stop(self) -> None:
        """Cancels the drivers (their sessions resume after a restart)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.tip.stop()

    async def drive(self, session_id: str) -> None:
        """Takes one session to completed or failed (or leaves it to a later sweep). A
        transient store error only delays the step (retried with backoff): every step
        is safe to repeat, so a busy store never fails a finalization."""
        backoff = Backoff(initial_s=STORE_RETRY_INITIAL_S, max_s=STORE_RETRY_MAX_S)
        try:
            while True:
                try:
                    again = await self.step(session_id)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    delay = backoff.next_s()
                    log.warning(
                        "finalization step deferred: the store is busy",
                        extra={"session_id": session_id, "retry_in_s": delay, "error": str(exc)},
                    )
                    await asyncio.sleep(delay)
                    continue
                backoff.reset()
                if not again:
                    return
                await self._pause(session_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("finalization failed unexpectedly", extra={"session_id": session_id})

    async def _pause(self, session_id: str) -> None:
        """Waits as the last step asked: for a final block above a height (at most
        ``anchor_recheck_s``), for a retry time, or ``anchor_poll_s``."""
        height, seconds = self._waits.pop(session_id, (-2, self.config.anchor_poll_s))
        if height >= -1:
            await self.tip.wait_past(height, self.config.anchor_recheck_s)
        else:
            await asyncio.sleep(seconds)

    def _wait_for_block(self, session_id: str, seen: int) -> None:
        self._waits[session_id] = (seen, 0.0)

    def _wait_until(self, session_id: str, when: datetime, now: datetime) -> None:
        seconds = (when - now).total_seconds()
        self._waits[session_id] = (-2, min(max(seconds, 0.0), self.config.anchor_recheck_s))

    async def step(self, session_id: str) -> bool:
        """One move of a session's finalization; whether to come back."""
        now = self.clock.now()
        session = await self.repo.claim_for_work(
            session_id, self.instance_id, now, now + timedelta(seconds=self.config.lease_s)
        )
        if session is None:
            return False  # another instance holds it
        if session["state"] == State.STOPPED:
            session = await self.repo.update_session(
                session_id,
                {"state": State.PROCESSING.value, "updated_at": now},
                states=[State.STOPPED.value],
            )
            if session is None:
                return True
        if session["state"] != State.PROCESSING:
            return False
        return await self._advance(session, now)

    async def _advance(self, session: Doc, now: datetime) -> bool:
        """Builds the manifest, then submits or follows the anchor of a processing session."""
        session_id = session["_id"]
        try:
            manifest = await self.ensure_manifest(session)
        except LucidError as exc:
            await self._fail(session_id, exc.message)
            return False
        anchoring: dict[str, Any] = dict(session.get("anchoring") or {})
        next_at: datetime | None = anchoring.get("next_attempt_at")
        if next_at is not None and now < next_at:
            self._wait_until(session_id, next_at, now)
            return True
        seen = self.tip.height
        if not anchoring.get("anchoring_id"):
            if await self._submit(session_id, manifest, anchoring, now):
                self._wait_for_block(session_id, seen)
            return True
        again = await self._follow(session_id, manifest, anchoring, now)
        if again and anchoring.get("anchoring_id"):
            self._wait_for_block(session_id, seen)
        return again

    async def _submit(self, session_id: str, manifest: Doc, anchoring: Doc, now: datetime) -> bool:
        """Submits the anchor; whether the chain holds one now (to follow)."""
        try:
            response = await self.chain.anchor(self.anchor_request(manifest))
            record = response.anchoring
        except grpc.aio.AioRpcError as exc:
            # The breaker to the chain is open (no attempt was made) or the chain's store
            # was busy (the request was fine): try again later without spending an attempt.
            if not_sent(exc) or store_busy(exc):
                await self._retry_later(session_id, anchoring, now, _describe(exc))
                return False
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                await self._attempt_failed(session_id, anchoring, _describe(exc))
                return False
            try:  # an earlier attempt reached the chain: follow that anchoring
                record = await self.chain.status(session_id)
            except (grpc.aio.AioRpcError, UnavailableClusterError) as again:
                await self._attempt_failed(session_id, anchoring, _describe(again))
                return False
        except UnavailableClusterError as exc:
            await self._attempt_failed(session_id, anchoring, _describe(exc))
            return False
        anchoring.update(
            {
                "anchoring_id": record.anchoring_id,
                "status": _STATUS_NAMES.get(record.status, PENDING),
                "tx_hash": record.tx_hash,
                "submit_time": now,
                "attempt_started": now,
                "next_attempt_at": None,
            }
        )
        await self.repo.update_session(session_id, {"anchoring": anchoring, "updated_at": now})
        return True

    async def _follow(self, session_id: str, manifest: Doc, anchoring: Doc, now: datetime) -> bool:
        try:
            record = await self.chain.status(session_id)
        except (grpc.aio.AioRpcError, UnavailableClusterError) as exc:
            anchoring["error_message"] = _describe(exc)
            return await self._maybe_timed_out(session_id, anchoring, now)
        before = dict(anchoring)
        status = _STATUS_NAMES.get(record.status, PENDING)
        anchoring.update(
            {
                "status": status,
                "tx_hash": record.tx_hash,
                "block_height": int(record.block_height),
                "block_hash": record.block_hash,
                "final": bool(record.final),
            }
        )
        if status == CONFIRMED and record.final:
            anchoring["confirm_time"] = (
                record.confirm_time.ToDatetime(tzinfo=now.tzinfo)
                if record.HasField("confirm_time")
                else now
            )
            await self._complete(session_id, manifest, anchoring, now)
            return False
        if status in (FAILED, EXPIRED):
            await self._attempt_failed(
                session_id, anchoring, record.error_message or f"the anchoring {status}"
            )
            return True
        return await self._maybe_timed_out(session_id, anchoring, now, changed=anchoring != before)

    async def _maybe_timed_out(
        self, session_id: str, anchoring: Doc, now: datetime, *, changed: bool = True
    ) -> bool:
        started: datetime | None = anchoring.get("attempt_started")
        if started is not None and (now - started).total_seconds() > self.config.anchor_timeout_s:
            await self._attempt_failed(session_id, anchoring, "no final block in time")
            return True
        if changed:  # an unchanged anchoring is not written again
            await self.repo.update_session(session_id, {"anchoring": anchoring})
        return True

    async def _retry_later(
        self, session_id: str, anchoring: Doc, now: datetime, error: str
    ) -> None:
        """Tries again after the backoff without spending one of the attempts."""
        anchoring["error_message"] = error
        anchoring["next_attempt_at"] = now + timedelta(seconds=self.config.anchor_retry_backoff_s)
        await self.repo.update_session(session_id, {"anchoring": anchoring})

    async def _attempt_failed(self, session_id: str, anchoring: Doc, error: str) -> None:
        attempts = int(anchoring.get("attempts", 0)) + 1
        now = self.clock.now()
        log.warning(
            "anchoring attempt failed",
            extra={"session_id": session_id, "attempt": attempts, "error": error},
        )
        anchoring.update(
            {
                "attempts": attempts,
                "error_message": error,
                "status": FAILED,
                "anchoring_id": "",
                "final": False,
            }
        )
        if attempts >= self.config.anchor_attempts:
            anchoring["next_attempt_at"] = None
            await self.repo.update_session(session_id, {"anchoring": anchoring})
            await self._fail(session_id, f"anchoring failed {attempts} times: {error}")
            return
        delay = self.config.anchor_retry_backoff_s * 2 ** (attempts - 1)
        anchoring["next_attempt_at"] = now + timedelta(seconds=delay)
        await self.repo.update_session(session_id, {"anchoring": anchoring, "updated_at": now})

    async def _fail(self, session_id: str, message: str) -> None:
        now = self.clock.now()
        await self.repo.update_session(
            session_id,
            {"state": State.FAILED.value, "error_message": message, "updated_at": now},
            states=[State.PROCESSING.value, State.STOPPED.value],
        )
        await self.repo.upsert_pipeline(session_id, {"state": "error", "error_message": message})
        await self.sessions.audit("session.fail", session_id, None, success=False)

    async def _complete(
        self, session_id: str, manifest: Doc, anchoring: Doc, now: datetime
    ) -> None:
        anchoring["next_attempt_at"] = None
        anchoring["error_message"] = ""
        # The manifest first: a session reads completed only with its manifest anchored.
        await self.repo.update_manifest(
            manifest["_id"], {"blockchain_anchored": True, "anchoring": anchoring}
        )
        await self.repo.update_session(
            session_id,
            {
                "state": State.COMPLETED.value,
                "anchoring": anchoring,
                "completed_at": now,
                "updated_at": now,
                "error_message": "",
            },
            states=[State.PROCESSING.value],
        )
        await self.repo.upsert_pipeline(session_id, {"state": PIPELINE_STOPPED, "updated_at": now})
        await self.sessions.audit("session.complete", session_id, None)

    async def retry(self, session_id: str) -> Doc:
        """Anchors a failed or processing session again with fresh attempts."""
        session = await self.repo.session(session_id)
        if session is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, f"session {session_id} not found")
        if await self.repo.manifest_of(session_id) is None or session["state"] not in (
            State.FAILED,
            State.PROCESSING,
        ):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"cannot retry the anchoring of a session that is {session['state']}"
                " without a manifest",
                metadata={"state": str(session["state"])},
            )
        updated = await self.repo.update_session(
            session_id,
            {
                "state": State.PROCESSING.value,
                "anchoring": {"attempts": 0},
                "error_message": "",
                "updated_at": self.clock.now(),
            },
            states=[State.FAILED.value, State.PROCESSING.value],
        )
        if updated is None:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the session moved meanwhile")
        self.wake(session_id)
        return updated

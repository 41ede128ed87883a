"""Cluster 03, session management: wiring of its server.

Recording sessions: the state machine, chunk upload (compress, seal, hash, store),
manifests and Merkle roots, anchoring through the chain, chunk proofs.
Owns the collections of ``lucid.sessions.schema``, the blob volume
(``<var>/blobs/sessions``) and the Redis prefix ``lucid:sessions:``.
"""

from __future__ import annotations

import asyncio
import uuid

from lucid.lib.sealing import Sealer
from lucid.runtime.limits import RateLimiter
from lucid.runtime.server import ClusterApp, Runtime
from lucid.sessions import schema
from lucid.sessions.bandwidth import UploadBandwidth
from lucid.sessions.blobstore import BlobStore
from lucid.sessions.chunks import Chunks
from lucid.sessions.config import SessionsConfig
from lucid.sessions.finalize import AnchorClient, Finalizer
from lucid.sessions.ingest import ChunkIngest, OpenStreams
from lucid.sessions.keys import KeyStore
from lucid.sessions.manifests import Manifests
from lucid.sessions.service import Sessions
from lucid.sessions.servicers.chunks import ChunkServicer
from lucid.sessions.servicers.manifests import ManifestServicer
from lucid.sessions.servicers.sessions import SessionServicer
from lucid.sessions.servicers.trust import TrustPolicyServicer
from lucid.sessions.store.repository import Doc, Repository
from lucid.sessions.trust_policies import TrustPolicies
from lucid.sessions.v1 import (
    chunks_pb2_grpc,
    manifests_pb2_grpc,
    sessions_pb2_grpc,
    trust_pb2_grpc,
)


async def build(runtime: Runtime, config: SessionsConfig | None = None) -> ClusterApp:
    """The sessions server."""
    config = config or SessionsConfig.of(runtime.settings)
    repo = Repository(runtime.datastores.db)
    store = BlobStore(config.blob_root)
    keys = KeyStore(repo.keys, Sealer(runtime.settings.sealing_passphrase()), runtime.clock)
    sessions = Sessions(repo, runtime.datastores.cache, runtime.clock, config, runtime.events)
    ingest = ChunkIngest(repo, store, keys, runtime.clock)
    streams = OpenStreams()
    chain = AnchorClient(runtime.channels)
    bandwidth = UploadBandwidth(RateLimiter(runtime.datastores.cache, runtime.clock, "sessions"))
    finalizer = Finalizer(
        repo,
        keys,
        clock=runtime.clock,
        config=config,
        chain=chain,
        sessions=sessions,
        instance_id=f"sessions-{uuid.uuid4().hex[:8]}",
    )
    sessions.flusher = streams.flush
    sessions.on_stopped = finalizer.wake

    async def remove_blobs(chunks: list[Doc]) -> None:
        for row in chunks:
            await asyncio.to_thread(store.delete, row["merkle_hash"])

    sessions.on_deleted = remove_blobs

    async def prepare() -> None:
        await asyncio.to_thread(store.ensure)
        await asyncio.to_thread(store.clean_temp)
        await keys.master_key()
        await keys.signing_key()

    manifests = Manifests(sessions, finalizer)

    async def session_states() -> dict[tuple[str, ...], float]:
        return {(state,): n for state, n in (await repo.count_by_state()).items()}

    state_gauge = runtime.metrics.sampled(
        "sessions",
        "Recorded sessions in each state; stopped and processing are the finalization queue.",
        session_states,
        labels=("state",),
    )
    return ClusterApp(
        servicers=[
            (
                sessions_pb2_grpc.add_SessionServiceServicer_to_server,
                SessionServicer(sessions, manifests),
            ),
            (
                chunks_pb2_grpc.add_ChunkServiceServicer_to_server,
                ChunkServicer(Chunks(sessions, ingest, chain, bandwidth), streams),
            ),
            (
                manifests_pb2_grpc.add_ManifestServiceServicer_to_server,
                ManifestServicer(manifests),
            ),
            (
                trust_pb2_grpc.add_TrustPolicyServiceServicer_to_server,
                TrustPolicyServicer(TrustPolicies(repo, runtime.clock)),
            ),
        ],
        collections=schema.COLLECTIONS,
        blob_paths=schema.BLOB_PATHS,
        tasks=[finalizer.run, state_gauge],
        on_ready=[prepare],
        on_stop=[finalizer.stop],
    )

"""``lucid.sessions.v1.ManifestService``: manifests and Merkle roots."""

from __future__ import annotations

import grpc

from lucid.sessions import convert
from lucid.sessions.convert import caller as caller_of
from lucid.sessions.manifests import Manifests
from lucid.sessions.v1 import manifests_pb2, manifests_pb2_grpc, sessions_pb2


class ManifestServicer(manifests_pb2_grpc.ManifestServiceServicer):
    """Translates the manifest rpcs to the manifests."""

    def __init__(self, manifests: Manifests) -> None:
        self.manifests = manifests

    async def CreateManifest(
        self, request: manifests_pb2.CreateManifestRequest, context: grpc.aio.ServicerContext
    ) -> manifests_pb2.CreateManifestResponse:
        manifest, chunks = await self.manifests.create(request.session_id, caller_of(context))
        return manifests_pb2.CreateManifestResponse(manifest=convert.manifest(manifest, chunks))

    async def GetManifest(
        self, request: manifests_pb2.GetManifestRequest, context: grpc.aio.ServicerContext
    ) -> manifests_pb2.GetManifestResponse:
        manifest, chunks = await self.manifests.get(
            request.manifest_id,
            request.session_id,
            caller_of(context),
            with_chunks=not request.summary_only,
        )
        return manifests_pb2.GetManifestResponse(manifest=convert.manifest(manifest, chunks))

    async def GetMerkleRoot(
        self, request: manifests_pb2.GetMerkleRootRequest, context: grpc.aio.ServicerContext
    ) -> manifests_pb2.GetMerkleRootResponse:
        manifest = await self.manifests.of_session(request.session_id, caller_of(context))
        return manifests_pb2.GetMerkleRootResponse(
            session_id=request.session_id,
            merkle_root=manifest["merkle_root"],
            leaf_count=int(manifest["chunk_count"]),
            hash_algorithm=sessions_pb2.HASH_ALGORITHM_SHA256,
            manifest_id=manifest["_id"],
        )

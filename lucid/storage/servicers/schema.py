"""gRPC adapter of ``lucid.storage.v1.SchemaService``."""

from __future__ import annotations

import grpc

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.runtime.context import current_principal
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.storage.store.declarations import DeclarationStore, cluster_name
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import schema_pb2, schema_pb2_grpc
from lucid.storage.validation import SchemaValidator


def _own_cluster_only(clusters: list[int], action: str) -> list[int]:
    """A calling service may act only on its own declaration."""
    principal = current_principal()
    if principal.user is not None or not principal.peer.is_cluster:
        return clusters
    own = access_pb2.Cluster.Value(f"CLUSTER_{principal.peer.name.upper()}")
    if clusters and set(clusters) != {own}:
        raise LucidError(
            ErrorCode.ERROR_CODE_PERMISSION_DENIED,
            f"a cluster may {action} only its own schema",
        )
    return [own]


@maps_store_errors
class SchemaServicer(schema_pb2_grpc.SchemaServiceServicer):
    """Declarations, InitSchema and ValidateSchema."""

    def __init__(
        self,
        declarations: DeclarationStore,
        validator: SchemaValidator,
        audit: AuditTrail,
        clock: Clock,
    ) -> None:
        self.declarations = declarations
        self.validator = validator
        self.audit = audit
        self.clock = clock

    async def DeclareSchema(
        self, request: schema_pb2.DeclareSchemaRequest, context: grpc.aio.ServicerContext
    ) -> schema_pb2.DeclareSchemaResponse:
        _own_cluster_only([request.declaration.cluster], "declare")
        for spec in request.declaration.redis_prefixes:
            owner = f"lucid:{cluster_name(request.declaration.cluster)}:"
            if not spec.prefix.startswith(owner):
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                    f"redis prefix {spec.prefix} is outside the cluster's {owner}",
                )
        recorded, changed = await self.declarations.record(request.declaration)
        return schema_pb2.DeclareSchemaResponse(declaration=recorded, changed=changed)

    async def ListSchemaDeclarations(
        self,
        request: schema_pb2.ListSchemaDeclarationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> schema_pb2.ListSchemaDeclarationsResponse:
        page = paging.page(request)
        found = [
            d
            for d in await self.declarations.all()
            if not request.cluster or d.cluster == request.cluster
        ]
        chosen = page.window(found)
        return schema_pb2.ListSchemaDeclarationsResponse(
            declarations=chosen,
            next_page_token=page.next_token(len(chosen), len(found)),
            total_size=len(found),
        )

    @audited(lambda r: ",".join(cluster_name(c) for c in r.clusters) or "all")
    async def InitSchema(
        self, request: schema_pb2.InitSchemaRequest, context: grpc.aio.ServicerContext
    ) -> schema_pb2.InitSchemaResponse:
        clusters = set(_own_cluster_only(list(request.clusters), "initialize"))
        chosen = [d for d in await self.declarations.all() if not clusters or d.cluster in clusters]
        return await self.validator.init(chosen, dry_run=request.dry_run)

    async def ValidateSchema(
        self, request: schema_pb2.ValidateSchemaRequest, context: grpc.aio.ServicerContext
    ) -> schema_pb2.ValidateSchemaResponse:
        return await self.validator.validate(
            await self.declarations.all(),
            clusters=request.clusters,
            sample_size=request.redis_sample_size,
            now=self.clock.now(),
        )

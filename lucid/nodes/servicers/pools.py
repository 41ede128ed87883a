"""PoolService: pool CRUD and membership."""

from __future__ import annotations

import grpc

from lucid.nodes import convert
from lucid.nodes.pools import Pools
from lucid.nodes.servicers.nodes import caller
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.nodes.v1 import pool_pb2_grpc
from lucid.runtime import paging


class PoolServiceServicer(pool_pb2_grpc.PoolServiceServicer):
    """Translates PoolService calls to the pool domain."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    async def ListPools(
        self, request: ppb.ListPoolsRequest, context: grpc.aio.ServicerContext
    ) -> ppb.ListPoolsResponse:
        page = paging.page(request, scope=caller(context).user_id)
        views, total = await self.pools.list(request.state, page.offset, page.size)
        return ppb.ListPoolsResponse(
            pools=[convert.pool(v) for v in views],
            next_page_token=page.next_token(len(views), total),
            total_size=total,
        )

    async def CreatePool(
        self, request: ppb.CreatePoolRequest, context: grpc.aio.ServicerContext
    ) -> ppb.CreatePoolResponse:
        view = await self.pools.create(
            {
                "name": request.name,
                "description": request.description,
                "max_nodes": request.max_nodes,
                "reward_split": request.reward_split,
                "resource_limits": convert.as_dict(request.resource_limits),
                "scaling_policy": convert.as_dict(request.scaling_policy),
            },
            caller(context),
        )
        return ppb.CreatePoolResponse(pool=convert.pool(view))

    async def GetPool(
        self, request: ppb.GetPoolRequest, context: grpc.aio.ServicerContext
    ) -> ppb.GetPoolResponse:
        view = await self.pools.get(request.pool_id)
        return ppb.GetPoolResponse(
            pool=convert.pool(view), members=[convert.member(m) for m in view.members]
        )

    async def UpdatePool(
        self, request: ppb.UpdatePoolRequest, context: grpc.aio.ServicerContext
    ) -> ppb.UpdatePoolResponse:
        changes: dict[str, object] = {}
        for name in ("name", "description", "max_nodes", "reward_split"):
            if getattr(request, name):
                changes[name] = getattr(request, name)
        for name in ("resource_limits", "scaling_policy"):
            if request.HasField(name):  # type: ignore[arg-type]
                changes[name] = convert.as_dict(getattr(request, name))
        view = await self.pools.update(request.pool_id, changes, caller(context))
        return ppb.UpdatePoolResponse(pool=convert.pool(view))

    async def DeletePool(
        self, request: ppb.DeletePoolRequest, context: grpc.aio.ServicerContext
    ) -> ppb.DeletePoolResponse:
        await self.pools.delete(request.pool_id, caller(context))
        return ppb.DeletePoolResponse()

    async def AddPoolNode(
        self, request: ppb.AddPoolNodeRequest, context: grpc.aio.ServicerContext
    ) -> ppb.AddPoolNodeResponse:
        view, member = await self.pools.add(
            request.pool_id, request.node_id, request.priority, caller(context)
        )
        return ppb.AddPoolNodeResponse(pool=convert.pool(view), member=convert.member(member))

    async def RemovePoolNode(
        self, request: ppb.RemovePoolNodeRequest, context: grpc.aio.ServicerContext
    ) -> ppb.RemovePoolNodeResponse:
        view = await self.pools.remove(request.pool_id, request.node_id, caller(context))
        return ppb.RemovePoolNodeResponse(pool=convert.pool(view))

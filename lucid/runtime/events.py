"""Events a cluster publishes on the mesh's Redis Streams (``lucid:events:<type>``),
through the mesh's ``PublishEvent`` as itself (its mTLS identity, no user token).

Publishing never slows or fails the change it reports: ``emit`` queues the call on a
background task and returns; a mesh that cannot be reached is logged, and the event is
lost (the change itself is already stored and audited in the cluster's own trail).
The mesh keeps events at least once for their subscribers from there on. Event types
are lower-case words joined by dots (``session.state-changed``, ``user.role-changed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import struct_pb2

from lucid.lib.ids import new_id
from lucid.mesh.v1 import messaging_pb2, messaging_pb2_grpc
from lucid.runtime.channels import Channels, UnavailableClusterError

log = logging.getLogger("lucid.runtime.events")

PUBLISH_TIMEOUT_S = 5.0
MAX_PENDING = 1000
"""Publications in flight at most; beyond, new events are dropped (and logged)."""


def event_type(name: str) -> str:
    """A name as an event type: lower case, ``_`` as ``-``."""
    return name.lower().replace("_", "-")


class EventPublisher:
    """A cluster's events to the mesh."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels
        self._pending: set[asyncio.Task[bool]] = set()

    async def publish(self, name: str, data: Mapping[str, Any], tags: tuple[str, ...] = ()) -> bool:
        """Publishes one event now; whether the mesh took it (failures are logged)."""
        body = struct_pb2.Struct()
        body.update({k: v for k, v in data.items() if v is not None})
        request = messaging_pb2.PublishEventRequest(
            event_id=new_id(), event_type=event_type(name), data=body, tags=list(tags)
        )
        try:
            stub = await self._channels.stub("mesh", messaging_pb2_grpc.MessagingServiceStub)
            await stub.PublishEvent(request, timeout=PUBLISH_TIMEOUT_S)
        except (grpc.aio.AioRpcError, UnavailableClusterError, OSError) as exc:
            log.warning("event not published", extra={"event_type": name, "error": str(exc)})
            return False
        return True

    def emit(self, name: str, data: Mapping[str, Any], tags: tuple[str, ...] = ()) -> None:
        """Publishes in the background; returns at once."""
        if len(self._pending) >= MAX_PENDING:
            log.warning("event dropped: too many in flight", extra={"event_type": name})
            return
        task = asyncio.ensure_future(self.publish(name, dict(data), tags))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        """Waits for the publications in flight (at most ``timeout_s``), cancels the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in late:
            task.cancel()

"""Events a cluster publishes on the mesh's Redis Streams (``lucid:events:<type>``),
through the mesh's ``PublishEvent`` as itself (its mTLS identity, no user token).

Publishing never slows or fails the change it reports: ``emit`` queues the call on a
background task and returns; a mesh that cannot be reached is logged, and the event is
lost (the change itself is already stored and audited in the cluster's own trail); after
such a failure events are dropped for ``PAUSE_S`` rather than tried one by one.
The mesh keeps events at least once for their subscribers from there on. Event types
are lower-case words joined by dots (``session.state-changed``, ``user.role-changed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import struct_pb2

from lucid.lib.ids import new_id
from lucid.mesh.v1 import messaging_pb2, messaging_pb2_grpc
from lucid.runtime.channels import Channels, UnavailableClusterError

log = logging.getLogger("lucid.runtime.events")

PUBLISH_TIMEOUT_S = 5.0
DRAIN_S = 1.0
PAUSE_S = 1.0
"""After the mesh failed to take an event, how long new events are dropped."""
"""How long a stopping cluster waits for its publications in flight."""
MAX_PENDING = 1000
"""Events waiting at most; beyond, new events are dropped (and logged)."""


def event_type(name: str) -> str:
    """A name as an event type: lower case, ``_`` as ``-``."""
    return name.lower().replace("_", "-")


class EventPublisher:
    """A cluster's events to the mesh, one publication at a time, in order."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], tuple[str, ...]]] = asyncio.Queue(
            maxsize=MAX_PENDING
        )
        self._worker: asyncio.Task[None] | None = None
        self._paused_until = 0.0

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
            self._paused_until = time.monotonic() + PAUSE_S
            return False
        return True

    def emit(self, name: str, data: Mapping[str, Any], tags: tuple[str, ...] = ()) -> None:
        """Queues an event for the background publisher; returns at once."""
        if time.monotonic() < self._paused_until:
            return  # the mesh just failed: dropped (logged when it failed)
        try:
            self._queue.put_nowait((name, dict(data), tags))
        except asyncio.QueueFull:
            log.warning("event dropped: too many waiting", extra={"event_type": name})
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        while True:
            name, data, tags = await self._queue.get()
            try:
                if time.monotonic() >= self._paused_until:
                    await self.publish(name, data, tags)
            finally:
                self._queue.task_done()

    async def drain(self, timeout_s: float = DRAIN_S) -> None:
        """Waits for the queued publications (at most ``timeout_s``), then stops."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=timeout_s)
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None

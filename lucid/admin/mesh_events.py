"""The events other clusters publish (Redis Streams behind the mesh's SubscribeEvents),
as admin consumes them: its audit intake (consumer group ``admin-audit``, from the
start of each stream, acknowledged once recorded) and its live dashboard hub (group
``admin-live``, every StreamDashboard of this instance fed from one subscription). A
deployment whose database is not ``lucid`` suffixes the groups with its name.

Called as the admin service (no user token). A stream that breaks is opened again
after a pause; an event not acknowledged is delivered again by the mesh (at least
once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format

from lucid.mesh.v1 import messaging_pb2, messaging_pb2_grpc
from lucid.runtime.channels import Channels, UnavailableClusterError

log = logging.getLogger("lucid.admin.events")

RETRY_S = 1.0
DEFAULT_DB = "lucid"


def group_name(base: str, database: str) -> str:
    """A consumer group of this deployment: ``base``, suffixed with the database name
    when it is not the default (deployments sharing a Redis keep their groups apart)."""
    if database == DEFAULT_DB:
        return base
    suffix = re.sub(r"[^a-z0-9-]+", "-", database.lower()).strip("-")
    return f"{base}-{suffix}"[:64]


BATCH = 50


@dataclass(frozen=True)
class MeshEvent:
    """One event as the mesh delivered it."""

    event_id: str
    event_type: str
    source: str
    time_s: float
    data: dict[str, Any]


class MeshEvents:
    """SubscribeEvents and AckEvent, as the admin service."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def batches(
        self, group: str, subscriber: str, patterns: tuple[str, ...]
    ) -> AsyncIterator[list[MeshEvent]]:
        """The batches of one push subscription, until it breaks (raises)."""
        stub = await self._channels.stub("mesh", messaging_pb2_grpc.MessagingServiceStub)
        request = messaging_pb2.SubscribeEventsRequest(
            subscriber_id=subscriber,
            consumer_group=group,
            event_types=list(patterns),
            delivery_mode=messaging_pb2.DELIVERY_MODE_PUSH,
            batch_size=BATCH,
            start_position=messaging_pb2.START_POSITION_EARLIEST,
        )
        async for reply in stub.SubscribeEvents(request):
            yield [
                MeshEvent(
                    event_id=e.event_id,
                    event_type=e.event_type,
                    source=e.source,
                    time_s=e.event_time.ToNanoseconds() / 1e9,
                    data=json_format.MessageToDict(e.data),
                )
                for e in reply.events
            ]

    async def ack(self, group: str, subscriber: str, event_ids: list[str]) -> None:
        """Acknowledges handled events for the group."""
        stub = await self._channels.stub("mesh", messaging_pb2_grpc.MessagingServiceStub)
        await stub.AckEvent(
            messaging_pb2.AckEventRequest(
                subscriber_id=subscriber, consumer_group=group, event_ids=event_ids
            ),
            timeout=5.0,
        )

    async def consume(
        self,
        group: str,
        subscriber: str,
        patterns: tuple[str, ...],
        handle: Callable[[MeshEvent], Awaitable[None]],
    ) -> None:
        """Handles every event of the subscription forever, acknowledging each batch
        once handled; reconnects after a pause when the stream breaks."""
        while True:
            try:
                async for batch in self.batches(group, subscriber, patterns):
                    for event in batch:
                        await handle(event)
                    if batch:
                        await self.ack(group, subscriber, [e.event_id for e in batch])
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, UnavailableClusterError, OSError) as exc:
                log.info(
                    "event subscription interrupted", extra={"group": group, "error": str(exc)}
                )
            except Exception:
                log.exception("event handling failed", extra={"group": group})
            await asyncio.sleep(RETRY_S)


class LiveHub:
    """One subscription of this admin instance, fanned out to its live dashboards.
    Events older than the hub's start are dropped (the group starts at each stream's
    beginning so that a type first published after the hub started is not missed)."""

    PATTERNS = ("session.*", "node.*", "payout.*", "user.*")

    def __init__(
        self, events: MeshEvents, now: Callable[[], float], group: str = "admin-live"
    ) -> None:
        self.events = events
        self.group = group
        self.now = now
        self.started_s = now()
        self._queues: set[asyncio.Queue[MeshEvent]] = set()

    @contextlib.contextmanager
    def listen(self) -> Any:
        """A queue of the events from now on, for as long as the ``with`` lasts."""
        queue: asyncio.Queue[MeshEvent] = asyncio.Queue(maxsize=1000)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    async def _fan_out(self, event: MeshEvent) -> None:
        if event.time_s < self.started_s:
            return
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled viewer misses events
                queue.put_nowait(event)

    async def run(self) -> None:
        """Feeds the listeners forever."""
        self.started_s = self.now()
        await self.events.consume(self.group, "admin-live-hub", self.PATTERNS, self._fan_out)

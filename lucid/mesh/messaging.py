"""Messages between services and events on Redis Streams (spec 10 §3): what is sent,
delivered, acknowledged and subscribed to, on ``store.messages`` and ``store.events``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from lucid.lib.clock import Clock
from lucid.mesh.identity import caller_name
from lucid.mesh.store import to_doc
from lucid.mesh.store.events import EventBus, StoredEvent, Subscription
from lucid.mesh.store.messages import DELIVERED, EXPIRED, FAILED, MessageQueue
from lucid.mesh.v1 import messaging_pb2
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.runtime.wire import timestamp

PRIORITY_NAMES = {
    messaging_pb2.MESSAGE_PRIORITY_UNSPECIFIED: "normal",
    messaging_pb2.MESSAGE_PRIORITY_LOW: "low",
    messaging_pb2.MESSAGE_PRIORITY_NORMAL: "normal",
    messaging_pb2.MESSAGE_PRIORITY_HIGH: "high",
    messaging_pb2.MESSAGE_PRIORITY_CRITICAL: "critical",
}
DEFAULT_MESSAGE_TTL_S = 3600
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_DELAY_MS = 1000
DEFAULT_EVENT_RETRIES = 3
DEFAULT_EVENT_RETRY_DELAY_MS = 5000
SUBSCRIBE_BLOCK_MS = 500

Doc = dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """What one read of a subscription found, and whether a pull subscription is done."""

    events: list[StoredEvent]
    done: bool
    idle: bool
    """No stream to read yet: the caller waits before reading again."""


class Messaging:
    """Sends, delivers and acknowledges messages; publishes and delivers events."""

    def __init__(self, messages: MessageQueue, events: EventBus, clock: Clock) -> None:
        self.messages = messages
        self.events = events
        self.clock = clock

    # messages

    async def send(self, request: messaging_pb2.SendMessageRequest, caller: Principal) -> Doc:
        """Queues a message (a repeated id answers the first one's state)."""
        now = self.clock.timestamp()
        ttl = request.ttl_seconds or DEFAULT_MESSAGE_TTL_S
        message = messaging_pb2.Message(
            message_id=request.message_id,
            source=caller_name(caller),
            destination=request.destination,
            payload=request.payload,
            headers=request.headers,
            priority=request.priority or messaging_pb2.MESSAGE_PRIORITY_NORMAL,
            ttl_seconds=ttl,
            retry_policy=request.retry_policy,
            correlation_id=request.correlation_id,
            create_time=timestamp(now),
            expire_time=timestamp(now + ttl),
        )
        doc, _ = await self.messages.send(
            {
                "message_id": request.message_id,
                "destination": request.destination,
                "priority": PRIORITY_NAMES[request.priority],
                "expire_at": now + ttl,
                "max_attempts": request.retry_policy.max_attempts or DEFAULT_MAX_ATTEMPTS,
                "retry_delay_ms": request.retry_policy.initial_delay_ms or DEFAULT_RETRY_DELAY_MS,
                "created_at": now,
                "doc": to_doc(message),
            }
        )
        return await self.messages.expire_if_due(doc, now)

    async def status(self, message_id: str) -> Doc:
        """A message and its state (expired once its TTL passed unconsumed)."""
        doc = await self.messages.get(message_id)
        if doc is None:
            raise not_found(f"message {message_id}")
        return await self.messages.expire_if_due(doc, self.clock.timestamp())

    async def receive(self, destination: str, consumer_id: str, size: int) -> list[Doc]:
        """Up to ``size`` messages handed to ``consumer_id`` (highest priority first)."""
        return await self.messages.receive(
            destination,
            consumer_id,
            size,
            now_s=self.clock.timestamp(),
            reclaim_ms=DEFAULT_RETRY_DELAY_MS,
        )

    async def ack(self, message_id: str, success: bool, error: str) -> str:
        """Settles a message being processed; a repeated ack answers its final state."""
        doc = await self.messages.get(message_id)
        if doc is None:
            raise not_found(f"message {message_id}")
        changed = await self.messages.ack(
            message_id,
            success=success,
            error=error,
            max_attempts=doc["max_attempts"],
            now_s=self.clock.timestamp(),
        )
        if changed is not None:
            return str(changed["status"])
        current = await self.messages.get(message_id) or doc
        if current["status"] == EXPIRED:
            raise LucidError(
                ErrorCode.ERROR_CODE_MESH_MESSAGE_EXPIRED, f"message {message_id} expired"
            )
        if current["status"] in (DELIVERED, FAILED):
            return str(current["status"])
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_STATE,
            f"message {message_id} is {current['status']}, not processing",
        )

    # events

    async def publish(
        self, request: messaging_pb2.PublishEventRequest, caller: Principal
    ) -> StoredEvent:
        """Appends an event to its type's stream (a repeated id answers the first)."""
        event, _ = await self.events.publish(
            StoredEvent(
                event_id=request.event_id,
                event_type=request.event_type,
                source=caller_name(caller),
                time_s=self.clock.timestamp(),
                data=json_format.MessageToDict(request.data),
                version=request.version or "1.0",
                tags=tuple(request.tags),
            )
        )
        return event

    @staticmethod
    def subscription(
        request: messaging_pb2.SubscribeEventsRequest, caller: Principal
    ) -> Subscription:
        """The subscription a request asks for (the group defaults to the caller)."""
        return Subscription(
            group=request.consumer_group or caller_name(caller),
            consumer=request.subscriber_id,
            patterns=tuple(request.event_types),
            sources=tuple(request.sources),
            tags=tuple(request.tags),
            batch_size=request.batch_size or 1,
            max_retries=request.max_retries
            if request.HasField("max_retries")
            else DEFAULT_EVENT_RETRIES,
            retry_delay_ms=request.retry_delay_ms or DEFAULT_EVENT_RETRY_DELAY_MS,
            from_start=request.start_position == messaging_pb2.START_POSITION_EARLIEST,
        )

    async def next_batch(self, sub: Subscription, *, pull: bool) -> Batch:
        """Stale events to deliver again, then new ones the subscription wants."""
        streams = await self.events.streams(sub)
        batch = await self.events.claim_stale(sub, streams)
        if len(batch) < sub.batch_size:
            fresh = await self.events.read_new(
                sub, streams, block_ms=None if pull or batch or not streams else SUBSCRIBE_BLOCK_MS
            )
            for stream, event in fresh:
                if sub.wants(event):
                    batch.append(event)
                else:  # filtered out: the group is done with it
                    await self.events.ack_entry(stream, sub.group, event.entry_id)
        return Batch(batch, done=pull and not batch, idle=not streams)

    async def ack_events(self, group: str, event_ids: list[str], caller: Principal) -> int:
        """Acknowledges events for a consumer group (the caller's by default)."""
        return await self.events.ack(group or caller_name(caller), event_ids)

"""Events on Redis Streams with consumer groups (DECISIONS: ``lucid:events:*``,
at least once).

- Each event type has its stream, ``lucid:events:{events}:<type>`` (one hash tag, so a
  Redis Cluster keeps them in one slot); the set
  ``lucid:mesh:event-types`` lists the types ever published, so a subscription's
  patterns (``session.*``, ``*``) find their streams, including ones that appear
  later.
- A subscriber belongs to a consumer group; the group shares the events of its
  streams. An event read and not acknowledged within ``retry_delay`` (its consumer
  crashed) is claimed by another consumer of the group with XAUTOCLAIM and
  delivered again; after ``max_retries`` deliveries it goes to the group's
  dead-letter stream. ``ack`` (XACK) ends its pending life.
- ``event_id`` is chosen by the publisher: a repeat publishes nothing new. The key
  ``lucid:mesh:event:<id>`` maps it to its stream entry, for acknowledgements.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

STREAM_PREFIX = "lucid:events:{events}:"
"""Every event stream carries one hash tag: a subscription reads several streams in one
XREADGROUP, which a Redis Cluster serves only within one hash slot."""
TYPES_KEY = "lucid:mesh:event-types"
EVENT_KEY = "lucid:mesh:event:{event_id}"
DEAD_LETTER = "lucid:mesh:dead-letter:{group}"
EVENT_INDEX_TTL_S = 7 * 24 * 3600
STREAM_MAXLEN = 100_000


@dataclass(frozen=True)
class StoredEvent:
    """An event as it travels in a stream."""

    event_id: str
    event_type: str
    source: str
    time_s: float
    data: dict[str, Any]
    version: str = "1.0"
    tags: tuple[str, ...] = ()
    delivery_count: int = 1
    entry_id: str = ""

    def fields(self) -> dict[str, str]:
        """The stream entry's fields."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "source": self.source,
            "time": repr(self.time_s),
            "data": json.dumps(self.data, separators=(",", ":")),
            "version": self.version,
            "tags": json.dumps(list(self.tags)),
        }

    @classmethod
    def of(cls, entry_id: str, fields: dict[str, str], delivery_count: int = 1) -> StoredEvent:
        """An event read back from a stream entry."""
        return cls(
            event_id=fields["event_id"],
            event_type=fields["event_type"],
            source=fields["source"],
            time_s=float(fields["time"]),
            data=json.loads(fields["data"]),
            version=fields.get("version", "1.0"),
            tags=tuple(json.loads(fields.get("tags", "[]"))),
            delivery_count=delivery_count,
            entry_id=entry_id,
        )


@dataclass(frozen=True)
class Subscription:
    """What a subscriber wants and how it is served."""

    group: str
    consumer: str
    patterns: tuple[str, ...]
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    batch_size: int = 1
    max_retries: int = 3
    retry_delay_ms: int = 5000
    from_start: bool = False

    def wants_type(self, event_type: str) -> bool:
        """Whether an event type matches one of the patterns."""
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.patterns)

    def wants(self, event: StoredEvent) -> bool:
        """Whether the filters (sources, tags) let an event through."""
        if self.sources and event.source not in self.sources:
            return False
        return set(self.tags) <= set(event.tags)


@dataclass
class EventBus:
    """Publishing, reading and acknowledging events."""

    redis: Any
    """A ``redis.asyncio.Redis`` with ``decode_responses=True`` (its stubs assume bytes)."""
    _joined: set[tuple[str, str]] = field(default_factory=set)

    async def publish(self, event: StoredEvent) -> tuple[StoredEvent, bool]:
        """Appends an event to its type's stream; ``(event, False)`` for a repeat id."""
        key = EVENT_KEY.format(event_id=event.event_id)
        if not await self.redis.set(key, "", nx=True, ex=EVENT_INDEX_TTL_S):
            stored = await self.redis.get(key)
            stream, _, entry_id = (stored or "").partition(" ")
            if entry_id:
                entries = await self.redis.xrange(stream, entry_id, entry_id)
                if entries:
                    return StoredEvent.of(entries[0][0], entries[0][1]), False
            return event, False
        stream = STREAM_PREFIX + event.event_type
        entry_id = await self.redis.xadd(
            stream, event.fields(), maxlen=STREAM_MAXLEN, approximate=True
        )
        await self.redis.sadd(TYPES_KEY, event.event_type)
        await self.redis.set(key, f"{stream} {entry_id}", ex=EVENT_INDEX_TTL_S)
        return StoredEvent(**{**event.__dict__, "entry_id": entry_id}), True

    async def streams(self, sub: Subscription) -> list[str]:
        """The streams of every published type the subscription matches (groups joined)."""
        types = sorted(t for t in await self.redis.smembers(TYPES_KEY) if sub.wants_type(t))
        streams = [STREAM_PREFIX + t for t in types]
        for stream in streams:
            if (stream, sub.group) in self._joined:
                continue
            try:
                await self.redis.xgroup_create(
                    stream, sub.group, id="0" if sub.from_start else "$", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._joined.add((stream, sub.group))
        return streams

    async def claim_stale(self, sub: Subscription, streams: Sequence[str]) -> list[StoredEvent]:
        """Events of crashed consumers, unacked past the retry delay, now this consumer's."""
        found: list[StoredEvent] = []
        for stream in streams:
            if len(found) >= sub.batch_size:
                break
            _, entries, *_ = await self.redis.xautoclaim(
                stream,
                sub.group,
                sub.consumer,
                min_idle_time=sub.retry_delay_ms,
                start_id="0-0",
                count=sub.batch_size - len(found),
            )
            for entry_id, fields in entries:
                if fields is None:  # deleted from the stream meanwhile
                    await self.redis.xack(stream, sub.group, entry_id)
                    continue
                pending = await self.redis.xpending_range(
                    stream, sub.group, min=entry_id, max=entry_id, count=1
                )
                count = int(pending[0]["times_delivered"]) if pending else 2
                event = StoredEvent.of(entry_id, fields, count)
                if count > sub.max_retries + 1:
                    await self._dead_letter(stream, sub.group, event)
                    continue
                found.append(event)
        return found

    async def read_new(
        self, sub: Subscription, streams: Sequence[str], block_ms: int | None
    ) -> list[tuple[str, StoredEvent]]:
        """Events no consumer of the group has seen yet (waits up to ``block_ms``)."""
        if not streams:
            return []
        reply = await self.redis.xreadgroup(
            sub.group,
            sub.consumer,
            dict.fromkeys(streams, ">"),
            count=sub.batch_size,
            block=block_ms,
        )
        return [
            (stream, StoredEvent.of(entry_id, fields))
            for stream, entries in reply or []
            for entry_id, fields in entries
        ]

    async def ack_entry(self, stream: str, group: str, entry_id: str) -> int:
        """Acknowledges one stream entry for a group."""
        return int(await self.redis.xack(stream, group, entry_id))

    async def ack(self, group: str, event_ids: Sequence[str]) -> int:
        """Acknowledges events by id; how many were pending for the group."""
        acked = 0
        for event_id in event_ids:
            stored = await self.redis.get(EVENT_KEY.format(event_id=event_id))
            stream, _, entry_id = (stored or "").partition(" ")
            if entry_id:
                acked += await self.ack_entry(stream, group, entry_id)
        return acked

    async def _dead_letter(self, stream: str, group: str, event: StoredEvent) -> None:
        await self.redis.xadd(
            DEAD_LETTER.format(group=group),
            {**event.fields(), "stream": stream, "deliveries": str(event.delivery_count)},
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )
        await self.redis.xack(stream, group, event.entry_id)

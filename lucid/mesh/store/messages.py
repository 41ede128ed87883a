"""Inter-service messages (spec 10 §3): queued → processing → delivered, or → failed
after its retries, or → expired when its TTL passes unconsumed.

MongoDB (``message_queue``) holds each message and its state; delivery runs on a
Redis stream per destination and priority (``lucid:mesh:queue:<dest>:<priority>``,
consumer group ``consumers``), read highest priority first. A message handed to a
consumer and not acked within its retry delay (the consumer crashed) is claimed
by another consumer and delivered again. State changes are conditional updates on
the current state, so two consumers never both deliver one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from redis.exceptions import ResponseError

GROUP = "consumers"
QUEUE = "lucid:mesh:queue:{destination}:{priority}"
PRIORITIES = ("critical", "high", "normal", "low")
"""Read order of the streams of one destination."""

QUEUED = "queued"
PROCESSING = "processing"
DELIVERED = "delivered"
FAILED = "failed"
EXPIRED = "expired"


def queue(destination: str, priority: str) -> str:
    """The stream of one destination and priority."""
    return QUEUE.format(destination=destination, priority=priority)


@dataclass
class MessageQueue:
    """Sending, receiving, acknowledging and expiring messages."""

    collection: AsyncCollection[dict[str, Any]]
    redis: Any
    """A ``redis.asyncio.Redis`` with ``decode_responses=True`` (its stubs assume bytes)."""

    async def send(self, doc: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Queues a message; ``(first, False)`` when its id was sent before."""
        try:
            await self.collection.insert_one({**doc, "status": QUEUED, "attempts": 0})
        except DuplicateKeyError:
            first = await self.get(doc["message_id"])
            assert first is not None
            return first, False
        await self._enqueue(doc["message_id"], doc["destination"], doc["priority"])
        sent = await self.get(doc["message_id"])
        assert sent is not None
        return sent, True

    async def _enqueue(self, message_id: str, destination: str, priority: str) -> None:
        stream = queue(destination, priority)
        await self._join(stream)
        entry = await self.redis.xadd(stream, {"message_id": message_id})
        await self.collection.update_one(
            {"message_id": message_id}, {"$set": {"stream": stream, "entry_id": entry}}
        )

    async def _join(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def get(self, message_id: str) -> dict[str, Any] | None:
        """One message."""
        return await self.collection.find_one({"message_id": message_id}, {"_id": 0})

    async def expire_if_due(self, doc: dict[str, Any], now_s: float) -> dict[str, Any]:
        """Marks a queued message past its TTL expired; returns the message as it is now."""
        if doc["status"] != QUEUED or doc["expire_at"] > now_s:
            return doc
        changed = _clean(
            await self.collection.find_one_and_update(
                {"message_id": doc["message_id"], "status": QUEUED},
                {"$set": {"status": EXPIRED, "updated_at": now_s}},
                return_document=ReturnDocument.AFTER,
            )
        )
        if changed is not None and changed.get("entry_id"):
            await self.redis.xack(changed["stream"], GROUP, changed["entry_id"])
        return changed or (await self.get(doc["message_id"])) or doc

    async def receive(
        self, destination: str, consumer: str, count: int, *, now_s: float, reclaim_ms: int
    ) -> list[dict[str, Any]]:
        """Up to ``count`` messages for ``destination``, now processing by ``consumer``."""
        taken: list[dict[str, Any]] = []
        for priority in PRIORITIES:
            stream = queue(destination, priority)
            await self._join(stream)
            _, stale, *_ = await self.redis.xautoclaim(
                stream, GROUP, consumer, min_idle_time=reclaim_ms, count=count - len(taken)
            )
            room = count - len(taken) - len(stale)
            fresh = (
                await self.redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=room)
                if room > 0
                else []
            )
            entries = list(stale) + [e for _, es in fresh or [] for e in es]
            for entry_id, fields in entries:
                if len(taken) >= count:
                    break  # left pending: claimed again after reclaim_ms
                message = await self._take(stream, entry_id, fields, consumer, now_s)
                if message is not None:
                    taken.append(message)
            if len(taken) >= count:
                break
        return taken

    async def _take(
        self,
        stream: str,
        entry_id: Any,
        fields: Mapping[Any, Any] | None,
        consumer: str,
        now_s: float,
    ) -> dict[str, Any] | None:
        message_id = _text((fields or {}).get(b"message_id") or (fields or {}).get("message_id"))
        doc = await self.get(message_id) if message_id else None
        if doc is None or _text(doc.get("entry_id")) != _text(entry_id):
            await self.redis.xack(stream, GROUP, entry_id)  # unknown or superseded entry
            return None
        doc = await self.expire_if_due(doc, now_s)
        if doc["status"] not in (QUEUED, PROCESSING):
            await self.redis.xack(stream, GROUP, entry_id)
            return None
        return _clean(
            await self.collection.find_one_and_update(
                {"message_id": message_id, "status": doc["status"], "attempts": doc["attempts"]},
                {
                    "$set": {"status": PROCESSING, "consumer": consumer, "updated_at": now_s},
                    "$inc": {"attempts": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
        )

    async def ack(
        self, message_id: str, *, success: bool, error: str, max_attempts: int, now_s: float
    ) -> dict[str, Any] | None:
        """Delivered on success; on failure queued again or, past its retries, failed.

        ``None`` when the message is not processing (acked before, expired, unknown)."""
        doc = await self.get(message_id)
        if doc is None or doc["status"] != PROCESSING:
            return None
        if success:
            update: dict[str, Any] = {"status": DELIVERED, "deliver_at": now_s}
        elif doc["attempts"] >= max_attempts:
            update = {"status": FAILED, "error_message": error}
        else:
            update = {"status": QUEUED, "error_message": error}
        changed = _clean(
            await self.collection.find_one_and_update(
                {"message_id": message_id, "status": PROCESSING, "attempts": doc["attempts"]},
                {"$set": {**update, "updated_at": now_s}},
                return_document=ReturnDocument.AFTER,
            )
        )
        if changed is None:
            return None
        await self.redis.xack(doc["stream"], GROUP, doc["entry_id"])
        if changed["status"] == QUEUED:
            await self._enqueue(message_id, doc["destination"], doc["priority"])
        return changed


def _clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A document without its ``_id`` (FerretDB takes no projection in findAndModify)."""
    if doc is not None:
        doc.pop("_id", None)
    return doc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")

"""Administration of Redis keys with SCAN (KEYS is disabled, spec 08 §3).

Listing pages with ``SCAN cursor MATCH pattern COUNT n``: the page token is the
cursor, so a page may hold fewer keys than asked for and pages stay consistent
while keys change (SCAN's guarantees). Flushing deletes by prefix only (SCAN
and UNLINK, never FLUSHDB), with glob characters of the prefix escaped.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from lucid.runtime.errors import invalid_argument, not_found
from lucid.storage.v1 import cache_pb2
from lucid.storage.validation import key_prefix

TYPES = {
    "string": cache_pb2.CACHE_KEY_TYPE_STRING,
    "hash": cache_pb2.CACHE_KEY_TYPE_HASH,
    "list": cache_pb2.CACHE_KEY_TYPE_LIST,
    "set": cache_pb2.CACHE_KEY_TYPE_SET,
    "zset": cache_pb2.CACHE_KEY_TYPE_ZSET,
    "stream": cache_pb2.CACHE_KEY_TYPE_STREAM,
}
TYPE_NAMES = {number: name for name, number in TYPES.items()}
MAX_SCAN_ROUNDS = 50
"""SCAN calls per page at most (a sparse match may need several)."""


def escape_glob(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\^" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Page:
    """One page of a scan."""

    keys: list[cache_pb2.CacheKey]
    cursor: int
    total: int


class CacheAdmin:
    """Key listing, reading, writing and flushing."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def info(self, section: str | None = None) -> dict[str, Any]:
        """Redis's ``INFO`` (one section, or all)."""
        return dict(await self.redis.info(section) if section else await self.redis.info())

    async def size(self) -> int:
        """How many keys the database holds."""
        return int(await self.redis.dbsize())

    async def keys_by_prefix(self) -> dict[str, int]:
        """How many ``lucid:*`` keys each owner's prefix holds."""
        counts: dict[str, int] = {}
        async for key in self.redis.scan_iter(match="lucid:*", count=1000):
            prefix = key_prefix(key.decode(errors="replace"))
            counts[prefix] = counts.get(prefix, 0) + 1
        return counts

    async def scan_page(
        self, pattern: str, key_type: cache_pb2.CacheKeyType.ValueType, limit: int, cursor: int
    ) -> Page:
        """Up to ``limit`` matching keys from ``cursor`` on; cursor 0 ends the scan."""
        found: list[Any] = []
        for _ in range(MAX_SCAN_ROUNDS):
            cursor, batch = await self.redis.scan(
                cursor=cursor,
                match=pattern or "*",
                count=max(limit - len(found), 10),
                _type=TYPE_NAMES.get(key_type),
            )
            found.extend(batch)
            if cursor == 0 or len(found) >= limit:
                break
        pipe = self.redis.pipeline(transaction=False)
        for key in found:
            pipe.type(key)
            pipe.ttl(key)
            pipe.memory_usage(key)
        answers = await pipe.execute()
        keys = []
        for i, key in enumerate(found):
            kind, ttl, size = answers[3 * i : 3 * i + 3]
            if _text(kind) == "none":  # expired between SCAN and TYPE
                continue
            keys.append(
                cache_pb2.CacheKey(
                    key=_text(key),
                    type=TYPES.get(_text(kind), cache_pb2.CACHE_KEY_TYPE_UNSPECIFIED),
                    ttl_seconds=int(ttl),
                    size_bytes=int(size or 0),
                )
            )
        return Page(keys, cursor, int(await self.redis.dbsize()))

    async def get(
        self, key: str, value_format: cache_pb2.ValueFormat.ValueType
    ) -> cache_pb2.GetCacheKeyResponse:
        """A key's value rendered in ``value_format``."""
        kind = _text(await self.redis.type(key))
        if kind == "none":
            raise not_found(f"key {key}")
        value: Any
        if kind == "string":
            value = await self.redis.get(key)
        elif kind == "hash":
            value = {_text(k): _text(v) for k, v in (await self.redis.hgetall(key)).items()}
        elif kind == "list":
            value = [_text(v) for v in await self.redis.lrange(key, 0, -1)]
        elif kind == "set":
            value = sorted(_text(v) for v in await self.redis.smembers(key))
        elif kind == "zset":
            pairs: Any = await self.redis.zrange(key, 0, -1, withscores=True)
            value = [[_text(m), s] for m, s in pairs]
        else:
            value = [
                [_text(i or b""), {_text(k): _text(v) for k, v in (f or {}).items()}]
                for i, f in (await self.redis.xrange(key)) or []
            ]
        ttl = int(await self.redis.ttl(key))
        return cache_pb2.GetCacheKeyResponse(
            key=key,
            type=TYPES.get(kind, cache_pb2.CACHE_KEY_TYPE_UNSPECIFIED),
            value=render(value, value_format),
            format=value_format or cache_pb2.VALUE_FORMAT_RAW,
            ttl_seconds=ttl,
        )

    async def set(self, key: str, value: bytes, ttl_seconds: int | None, nx: bool) -> bool:
        """Sets a string; with ``nx`` only when absent. Returns whether it was written."""
        written = await self.redis.set(key, value, ex=ttl_seconds, nx=nx)
        return bool(written)

    async def delete(self, key: str) -> None:
        """Deletes a key; NOT_FOUND when absent."""
        if not await self.redis.unlink(key):
            raise not_found(f"key {key}")

    async def flush_prefix(self, prefix: str) -> int:
        """Deletes every key starting with ``prefix``; returns how many."""
        deleted = 0
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=escape_glob(prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await self.redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await self.redis.unlink(*batch))
        return deleted


def render(value: Any, value_format: int) -> str:
    """A value as JSON, raw text or base64."""
    if value_format == cache_pb2.VALUE_FORMAT_BASE64:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.b64encode(data).decode()
    if value_format == cache_pb2.VALUE_FORMAT_JSON:
        if isinstance(value, bytes):
            text = value.decode(errors="replace")
            try:
                return json.dumps(json.loads(text))
            except ValueError:
                return json.dumps(text)
        return json.dumps(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return json.dumps(value)


def parse_value(value: str, value_format: int) -> bytes:
    """The bytes to store for a value written in ``value_format``."""
    if value_format == cache_pb2.VALUE_FORMAT_BASE64:
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise invalid_argument("value", "not valid base64") from exc
    if value_format == cache_pb2.VALUE_FORMAT_JSON:
        try:
            json.loads(value)
        except ValueError as exc:
            raise invalid_argument("value", "not valid JSON") from exc
    return value.encode()

"""TOTP step-ups in Redis: ``lucid:admin:stepup:<user_id>`` holds the step-up id and
expires with it."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from lucid.admin.schema import REDIS_PREFIX
from lucid.runtime.errors import ErrorCode, LucidError


def _key(user_id: str) -> str:
    return f"{REDIS_PREFIX}stepup:{user_id}"


class StepUpStore:
    """The live step-ups."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    async def put(self, user_id: str, step_up_id: str, ttl_s: int) -> None:
        """Records a step-up for ``ttl_s`` seconds."""
        try:
            await self.cache.set(_key(user_id), step_up_id, ex=ttl_s)
        except RedisError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"step-up: {exc}") from exc

    async def get(self, user_id: str) -> str | None:
        """The live step-up of a user, if any."""
        try:
            value = await self.cache.get(_key(user_id))
        except RedisError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"step-up: {exc}") from exc
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def ttl(self, user_id: str) -> int | None:
        """Seconds left of a user's live step-up, if any."""
        try:
            left = int(await self.cache.ttl(_key(user_id)))
        except RedisError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"step-up: {exc}") from exc
        return left if left > 0 else None

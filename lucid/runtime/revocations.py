"""The token revocation list every server checks: auth's keys in Redis, pushed.

Auth revokes a token id or a whole login session by setting a Redis key (kept for
the longest life a token could still have) and publishing the same fact on
``REVOCATIONS_CHANNEL`` (``publish_revocation``). A server checks a token it has
not seen before against the keys (one round trip); while its subscription to the
channel is live it keeps what it hears, so a token it already checked needs no
round trip again: a revocation after that check arrives on the channel.

The subscription has an *epoch*: it changes whenever the subscription is (re)made,
and is ``None`` while there is none. A check remembered under one epoch is trusted
only in that same epoch, since messages sent while disconnected are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from redis.asyncio.cluster import ClusterPipeline

from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.tokens import ACCESS_TTL_S, LEEWAY_S, REVOKED_JTI_KEY, REVOKED_SESSION_KEY

log = logging.getLogger("lucid.revocations")

REVOCATIONS_CHANNEL = "lucid:auth:revocations"
"""Redis pub/sub channel: ``jti:<id>`` or ``sid:<id>`` per revocation."""
HEARD_KEEP_S = ACCESS_TTL_S + 2 * LEEWAY_S
"""How long a heard revocation matters: no access token outlives it (sessions that are
revoked are never refreshed, so their newest access token dies within this too)."""
RETRY_S = 1.0
LISTEN_SLICE_S = 1.0


def _cancel_was_swallowed() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def publish_revocation(pipe: Any, *, jti: str = "", session_id: str = "") -> list[str]:
    """Queues the message of one revocation on a Redis pipeline (after its key is set).

    A Redis Cluster pipeline cannot carry PUBLISH: there the messages are returned, for
    ``publish_pending`` to send once the pipeline has run (still after the key is set)."""
    messages = []
    if jti:
        messages.append(f"jti:{jti}")
    if session_id:
        messages.append(f"sid:{session_id}")
    if isinstance(pipe, ClusterPipeline):
        return messages
    for message in messages:
        pipe.publish(REVOCATIONS_CHANNEL, message)
    return []


async def publish_pending(redis: Any, messages: list[str]) -> None:
    """Publishes what ``publish_revocation`` could not queue (on a Redis Cluster)."""
    for message in messages:
        await redis.publish(REVOCATIONS_CHANNEL, message)


class RedisRevocationList:
    """Revoked token ids and login sessions: read from Redis, then heard on the channel."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._heard: OrderedDict[str, float] = OrderedDict()  # "jti:…"/"sid:…" → monotonic
        self._epoch: int | None = None
        self._epochs = 0

    def epoch(self) -> int | None:
        """The current subscription's number, or ``None`` while not subscribed."""
        return self._epoch

    def heard(self, jti: str, session_id: str) -> bool:
        """Whether a revocation of either was heard on the channel (no round trip)."""
        if not self._heard:
            return False
        return f"jti:{jti}" in self._heard or (
            bool(session_id) and f"sid:{session_id}" in self._heard
        )

    async def is_revoked(self, jti: str, session_id: str) -> bool:
        """True when either is revoked, asking Redis (one round trip)."""
        if self.heard(jti, session_id):
            return True
        keys = [REVOKED_JTI_KEY.format(jti=jti)]
        if session_id:
            keys.append(REVOKED_SESSION_KEY.format(sid=session_id))
        try:
            found = await self._redis.exists(*keys)
        except Exception as exc:  # a revocation check that cannot run must not pass
            raise LucidError(
                ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, "cannot check token revocation"
            ) from exc
        return bool(found)

    def _hear(self, entry: str) -> None:
        now = time.monotonic()
        self._heard[entry] = now
        self._heard.move_to_end(entry)
        while self._heard:
            oldest, at = next(iter(self._heard.items()))
            if now - at < HEARD_KEEP_S:
                break
            del self._heard[oldest]

    async def watch(self) -> None:
        """Listens on the channel until cancelled, subscribing again after a failure."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(REVOCATIONS_CHANNEL)
                while True:
                    # redis-py can swallow a cancellation while it blocks on the socket
                    # (then the server's stop waits forever): wait in short slices and
                    # honour a cancellation that was swallowed.
                    message = await pubsub.get_message(timeout=LISTEN_SLICE_S)
                    if _cancel_was_swallowed():
                        raise asyncio.CancelledError
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._epochs += 1
                        self._epoch = self._epochs
                    elif message["type"] == "message":
                        data = message["data"]
                        self._hear(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._epoch is not None:  # once per loss, not per retry
                    log.warning("revocation channel lost; checking Redis per call: %s", exc)
            finally:
                self._epoch = None
                with contextlib.suppress(Exception):  # a dead connection may not close cleanly
                    await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(RETRY_S)

"""The audit log of storage's changing rpcs (``storage_audit_events``).

Every write rpc is recorded twice over: an ``attempt`` is written before the
change (if it cannot be written the change is refused, so nothing changes
unaudited) and completed with the outcome afterwards. Events name the caller,
the rpc, its target and the result; never values or secrets.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.context import current_principal, current_request_id
from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.storage.audit")


class AuditLog:
    """Writes audit events."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], clock: Clock) -> None:
        self.collection = collection
        self.clock = clock

    async def begin(self, method: str, target: str) -> str:
        """Records an attempt; raises ``LucidError`` (5003) if it cannot be recorded."""
        principal = current_principal()
        event_id = new_id()
        event = {
            "event_id": event_id,
            "time": self.clock.now(),
            "method": method,
            "target": target,
            "principal": principal.display,
            "user_id": principal.user.user_id if principal.user else "",
            "peer": principal.peer.spiffe_id,
            "request_id": current_request_id(),
            "result": "attempt",
        }
        try:
            await self.collection.insert_one(event)
        except PyMongoError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE,
                "the audit log cannot be written; nothing was changed",
            ) from exc
        return event_id

    async def finish(self, event_id: str, result: str, detail: str = "") -> None:
        """Records the outcome of an attempt (best effort: the change already happened)."""
        try:
            await self.collection.update_one(
                {"event_id": event_id},
                {"$set": {"result": result, "detail": detail[:500], "end_time": self.clock.now()}},
            )
        except PyMongoError:
            log.error("audit outcome not recorded", extra={"event_id": event_id})


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def audited(target: Callable[[Any], str]) -> Callable[[Handler], Handler]:
    """Wraps a servicer method ``(self, request, context)`` whose ``self.audit`` is an
    ``AuditLog``: the attempt is recorded first, the outcome after."""

    def wrap(method: Handler) -> Handler:
        @functools.wraps(method)
        async def run(self: Any, request: Any, context: Any) -> Any:
            audit: AuditLog = self.audit
            event_id = await audit.begin(method.__name__, target(request))
            try:
                response = await method(self, request, context)
            except LucidError as exc:
                await audit.finish(event_id, "refused", f"{exc.reason}: {exc.message}")
                raise
            except BaseException as exc:
                await audit.finish(event_id, "error", type(exc).__name__)
                raise
            await audit.finish(event_id, "ok")
            return response

        return run  # type: ignore[return-value]

    return wrap

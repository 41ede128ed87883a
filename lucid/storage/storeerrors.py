"""Store failures as Lucid errors: an unreachable MongoDB is 5003, Redis 5005."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions
from pymongo.errors import ConnectionFailure

from lucid.runtime.errors import ErrorCode, LucidError

Cls = TypeVar("Cls", bound=type)


def _wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, "MongoDB does not answer"
            ) from exc
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, "Redis does not answer"
            ) from exc

    return run


def maps_store_errors(cls: Cls) -> Cls:
    """Wraps every rpc method (``CamelCase`` coroutine) of a servicer class."""
    for name, member in list(vars(cls).items()):
        if name[:1].isupper() and inspect.iscoroutinefunction(member):
            setattr(cls, name, _wrap(member))
    return cls

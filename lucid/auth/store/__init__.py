"""Storage of the auth cluster: MongoDB collections and Redis keys, no rules."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection


async def find_page(
    collection: AsyncCollection[dict[str, Any]],
    query: dict[str, Any],
    sort: list[tuple[str, int]],
    *,
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """The documents of one page of ``query`` in ``sort`` order, and how many match."""
    total = await collection.count_documents(query)
    cursor = collection.find(query).sort(sort).skip(offset).limit(limit)
    return [doc async for doc in cursor], total

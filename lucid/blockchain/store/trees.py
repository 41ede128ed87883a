"""Stored Merkle trees of sessions: one document per tree (``_id``: the session) and its
leaf entries as raw 32-byte values in pages of ``PAGE_LEAVES`` (so a tree of a million
leaves fits MongoDB's document limit). A duplicate tree is reported as ``False``, never
as a pymongo error."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bson import Binary
from pymongo.errors import DuplicateKeyError

from lucid.blockchain.store.chain import Doc, Repository

PAGE_LEAVES = 100_000


def _page_key(tree_id: str, page: int) -> str:
    return f"{tree_id}:{page:06d}"


async def insert_leaves(repo: Repository, tree_id: str, entries: Sequence[bytes]) -> None:
    """Stores a tree's leaf entries, page by page."""
    for page in range(0, len(entries), PAGE_LEAVES):
        await repo.merkle_leaves.insert_one(
            {
                "_id": _page_key(tree_id, page // PAGE_LEAVES),
                "tree_id": tree_id,
                "entries": Binary(b"".join(entries[page : page + PAGE_LEAVES])),
            }
        )


async def insert_tree(repo: Repository, doc: Doc) -> bool:
    """Stores a tree (``doc["_id"]`` is its session); ``False`` when the session has one."""
    try:
        await repo.merkle_trees.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def delete_leaves(repo: Repository, tree_id: str) -> None:
    """Drops the leaf pages of a tree that was not stored."""
    await repo.merkle_leaves.delete_many({"tree_id": tree_id})


async def entries_of(repo: Repository, tree_id: str) -> list[bytes]:
    """A tree's leaf entries, in order."""
    pages: list[bytes] = []
    while (
        page := await repo.merkle_leaves.find_one({"_id": _page_key(tree_id, len(pages))})
    ) is not None:
        pages.append(bytes(page["entries"]))
    raw = b"".join(pages)
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


async def by_root(repo: Repository, root_hash: str) -> Doc | None:
    """The tree with a root."""
    return await repo.merkle_trees.find_one({"root_hash": root_hash})


async def by_session(repo: Repository, session_id: str) -> Doc | None:
    """A session's tree."""
    return await repo.merkle_trees.find_one({"_id": session_id})


async def set_status(
    repo: Repository, session_id: str, status: str, now: datetime, message: str | None = None
) -> None:
    """Moves a session's tree to a status (with an error message when given)."""
    changes: Doc = {"status": status, "update_time": now}
    if message is not None:
        changes["error_message"] = message
    await repo.merkle_trees.update_one({"_id": session_id}, {"$set": changes})

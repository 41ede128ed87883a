"""The devnet's durable state: blocks, mined transactions and receipts, and the world state.

SQLite in WAL mode; one transaction per block writes the block, its transactions and
the whole world state (accounts and token), so a block that was ever served survives
a kill. Pending transactions are never stored (a node may lose them, as on TRON).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, id TEXT NOT NULL,
                                   body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txs (txid TEXT PRIMARY KEY, number INTEGER NOT NULL,
                                tx TEXT NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
"""


class ChainStore:
    """Reads and writes the chain file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def load_state(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT body FROM state WHERE id = 1").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def block_headers(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT body FROM blocks ORDER BY number").fetchall()
        return [json.loads(r[0]) for r in rows]

    def append(
        self,
        block: dict[str, Any],
        txs: list[tuple[str, dict[str, Any], dict[str, Any]]],
        state: dict[str, Any],
    ) -> None:
        """Writes one block, its transactions with their receipts, and the state after it."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO blocks (number, id, body) VALUES (?, ?, ?)",
                (block["number"], block["id"], json.dumps(block)),
            )
            db.executemany(
                "INSERT INTO txs (txid, number, tx, info) VALUES (?, ?, ?, ?)",
                [(t, block["number"], json.dumps(tx), json.dumps(i)) for t, tx, i in txs],
            )
            db.execute(
                "INSERT INTO state (id, body) VALUES (1, ?) "
                "ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                (json.dumps(state),),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def transaction(self, txid: str) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        row = self._db.execute(
            "SELECT number, tx, info FROM txs WHERE txid = ?", (txid,)
        ).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]), json.loads(row[2]))

    def block_transactions(self, number: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT tx FROM txs WHERE number = ? ORDER BY rowid", (number,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

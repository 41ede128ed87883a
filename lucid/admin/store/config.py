"""The system configuration's repository: the current version in ``admin_state`` and
every version in ``admin_config_history``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.admin.schema import CONFIG_HISTORY, STATE
from lucid.runtime.errors import ErrorCode, LucidError

CONFIG_ID = "system_config"


@dataclass(frozen=True)
class ConfigRecord:
    """One version of the configuration."""

    version: int
    values: dict[str, Any]
    updated_at: datetime | None
    updated_by: str


def _unavailable(exc: PyMongoError) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"config store: {exc}")


class ConfigStore:
    """The configuration documents."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.state = db[STATE]
        self.history = db[CONFIG_HISTORY]

    async def current(self) -> ConfigRecord | None:
        """The current version, if one was ever saved."""
        try:
            doc = await self.state.find_one({"_id": CONFIG_ID})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        if doc is None:
            return None
        return ConfigRecord(doc["version"], doc["values"], doc["updated_at"], doc["updated_by"])

    async def save(self, record: ConfigRecord) -> None:
        """Saves a new version; ``INCONSISTENT_STATE`` if another writer took it."""
        doc = {
            "version": record.version,
            "values": record.values,
            "updated_at": record.updated_at,
            "updated_by": record.updated_by,
        }
        try:
            await self.history.insert_one(dict(doc))
            await self.state.replace_one({"_id": CONFIG_ID}, doc, upsert=True)
        except DuplicateKeyError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_INCONSISTENT_STATE,
                "the configuration changed meanwhile; read it again",
            ) from exc
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

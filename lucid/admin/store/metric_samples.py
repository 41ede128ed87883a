"""The dashboard's metric history (``admin_metric_samples``): one document per
overview, expiring after 30 days."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from lucid.admin.schema import METRIC_SAMPLES
from lucid.runtime.errors import ErrorCode, LucidError


@dataclass(frozen=True)
class MetricSample:
    """What one overview saw."""

    at: datetime
    cpu: float
    memory: float
    disk: float
    network: float
    sessions: float


def _unavailable(exc: PyMongoError) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"metric samples: {exc}")


class MetricSampleStore:
    """``admin_metric_samples``."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[METRIC_SAMPLES]

    async def add(self, sample: MetricSample) -> None:
        """Stores one sample."""
        try:
            await self.collection.insert_one(asdict(sample))
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def since(self, start: datetime, limit: int) -> list[MetricSample]:
        """The samples from ``start`` on, oldest first (at most ``limit``)."""
        try:
            cursor = (
                self.collection.find({"at": {"$gte": start}}, {"_id": 0})
                .sort([("at", ASCENDING)])
                .limit(limit)
            )
            return [MetricSample(**doc) async for doc in cursor]
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

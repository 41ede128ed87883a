"""Single-document settings (``rdp_settings``): the resource limits and the xrdp
daemon's configuration."""

from __future__ import annotations

import dataclasses
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.rdp import schema
from lucid.rdp.records import Limits, XrdpSettings

LIMITS_ID = "limits"
XRDP_ID = "xrdp"


def _fields(doc: dict[str, Any], kind: type[Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in doc.items() if k in names}


class SettingsStore:
    """Reads and replaces the settings documents."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._settings = db[schema.SETTINGS]

    async def limits(self, default: Limits) -> Limits:
        """The stored limits, or ``default``."""
        doc = await self._settings.find_one({"_id": LIMITS_ID})
        return Limits(**_fields(doc, Limits)) if doc else default

    async def put_limits(self, limits: Limits) -> None:
        """Replaces the limits."""
        await self._settings.replace_one(
            {"_id": LIMITS_ID}, {"_id": LIMITS_ID, **vars(limits)}, upsert=True
        )

    async def xrdp(self) -> XrdpSettings:
        """The stored xrdp settings, or the defaults."""
        doc = await self._settings.find_one({"_id": XRDP_ID})
        if not doc:
            return XrdpSettings()
        fields = _fields(doc, XrdpSettings)
        fields["tls_protocols"] = tuple(fields.get("tls_protocols", ()))
        return XrdpSettings(**fields)

    async def put_xrdp(self, settings: XrdpSettings) -> None:
        """Replaces the xrdp settings."""
        doc = {"_id": XRDP_ID, **vars(settings)}
        doc["tls_protocols"] = list(settings.tls_protocols)
        await self._settings.replace_one({"_id": XRDP_ID}, doc, upsert=True)

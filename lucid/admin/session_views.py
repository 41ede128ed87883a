"""The console's view of recording sessions: listing (with the console's grouping of
states: active, idle, terminated), details and logs (the session's audit events),
read from the sessions cluster on behalf of the administrator (its token forwarded)."""

from __future__ import annotations

from typing import Protocol

from lucid.admin.clusters import SessionLogLine, SessionView

CONSOLE_STATES = {
    "created": "idle",
    "starting": "active",
    "recording": "active",
    "paused": "idle",
}
"""The sessions cluster's states as the console groups them; all others: terminated."""
MAX_SCAN = 10_000


def console_state(view: SessionView) -> str:
    """``active``, ``idle`` or ``terminated``."""
    return CONSOLE_STATES.get(view.state, "terminated")


class SessionReader(Protocol):
    """The sessions cluster's reads, as the administrator."""

    async def get(self, session_id: str, token: str) -> SessionView:
        """GetSession."""

    async def list_page(
        self, owner_user_id: str, page_token: str, token: str
    ) -> tuple[list[SessionView], str, int]:
        """One page of ListSessions."""

    async def events(
        self, session_id: str, page_size: int, page_token: str, token: str
    ) -> tuple[list[SessionLogLine], str, int]:
        """One page of ListSessionEvents."""


class SessionViews:
    """ListSessions and GetSessionDetails of the console."""

    def __init__(self, sessions: SessionReader) -> None:
        self.sessions = sessions

    async def page(
        self, state: str, owner_user_id: str, offset: int, size: int, token: str
    ) -> tuple[list[SessionView], int]:
        """A page of sessions in a console state ("" for any) and how many match."""
        found: list[SessionView] = []
        cursor = ""
        while len(found) < MAX_SCAN:
            views, cursor, _ = await self.sessions.list_page(owner_user_id, cursor, token)
            found += [v for v in views if not state or console_state(v) == state]
            if not cursor:
                break
        return found[offset : offset + size], len(found)

    async def details(self, session_id: str, token: str) -> SessionView:
        """One session."""
        return await self.sessions.get(session_id, token)

    async def logs(
        self, session_id: str, page_size: int, page_token: str, token: str
    ) -> tuple[list[SessionLogLine], str, int]:
        """A page of a session's log, newest first (NOT_FOUND for an unknown session)."""
        await self.sessions.get(session_id, token)
        return await self.sessions.events(session_id, page_size, page_token, token)

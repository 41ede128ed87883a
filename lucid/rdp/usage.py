"""Usage reports (spec 04 GetResourceUsage): the host's samples, a server's, and each
of its RDP sessions' share (the server's samples while the session lived), for the
servers and sessions the actor may see."""

from __future__ import annotations

from dataclasses import dataclass, field

from lucid.rdp.actor import Actor
from lucid.rdp.rdpsessions import RdpSessions
from lucid.rdp.records import Sample, SessionRecord
from lucid.rdp.resources import Resources, during
from lucid.rdp.servers import Servers


@dataclass(frozen=True)
class UsageReport:
    """Samples, oldest first."""

    system: list[Sample]
    server_id: str = ""
    server: list[Sample] = field(default_factory=list)
    sessions: list[tuple[str, list[Sample]]] = field(default_factory=list)


class UsageReports:
    """Builds usage reports."""

    def __init__(self, resources: Resources, servers: Servers, sessions: RdpSessions) -> None:
        self.resources = resources
        self.servers = servers
        self.sessions = sessions

    async def report(
        self, actor: Actor, *, server_id: str, session_id: str, seconds: float
    ) -> UsageReport:
        """The host's usage, and a server's and its sessions' when asked for."""
        since = self.resources.since(seconds)
        system = await self.resources.usage("host", "", since)
        chosen: list[SessionRecord] = []
        if session_id:
            session = await self.sessions.get(actor, session_id)
            server_id = server_id or session.server_id
            chosen = [session]
        if not server_id:
            return UsageReport(system)
        server = await self.servers.get(actor, server_id)
        samples = await self.resources.usage("server", server.server_id, since)
        if not session_id:
            chosen, _ = await self.sessions.find(
                actor, user_id="", server_id=server_id, state="", offset=0, limit=0
            )
        shares = [(s.session_id, during(samples, s.created_at, s.terminated_at)) for s in chosen]
        return UsageReport(system, server.server_id, samples, shares)

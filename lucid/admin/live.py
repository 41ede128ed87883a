"""The live dashboard (StreamDashboard): what the clusters publish, as it happens, and
what changed, every ``interval`` seconds.

Between ticks, the events the clusters publish on the mesh (``session.state-changed``,
``node.registered``; see ``lucid.admin.mesh_events.LiveHub``) are sent at once as session
and node changes. Each tick reads the mesh the way the overview does (health, sessions,
nodes, chain) and sends, of the event types asked for: a metric update (this host's resources and
the session counts), a session change per session that appeared or changed console
state, a node status change per node that changed state, a system alert per component
that stopped being healthy, and a chain update when the chain's height moved. The
first tick only sets the baseline (plus its metric update). The stream starts with
``connection_established`` and ends when the client goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from lucid.admin.clusters import ChainView
from lucid.admin.mesh_events import LiveHub, MeshEvent
from lucid.admin.nodes_link import NodeView
from lucid.admin.overview import HEALTHY, Dashboard, Overview
from lucid.admin.session_views import CONSOLE_STATES, console_state
from lucid.lib.ids import new_id
from lucid.runtime.channels import UnavailableClusterError
from lucid.runtime.errors import LucidError

CONNECTED, METRICS, ALERT = "connection_established", "metric_update", "system_alert"
SESSION, NODE, CHAIN = "session_change", "node_status_change", "blockchain_update"
ALL = frozenset({CONNECTED, METRICS, ALERT, SESSION, NODE, CHAIN})
DEFAULT_INTERVAL_S = 5
NODE_PAGE = 100


class NodeLister(Protocol):
    """The nodes cluster's ListNodes, as the administrator."""

    async def page(
        self, state: int, page_size: int, page_token: str, token: str
    ) -> tuple[list[NodeView], str, int]:
        """One page of nodes."""


@dataclass(frozen=True)
class LiveEvent:
    """One event of the stream; ``data`` depends on ``kind``."""

    kind: str
    data: object


@dataclass(frozen=True)
class Connected:
    """The stream's id and tick."""

    stream_id: str
    interval_s: int


@dataclass(frozen=True)
class SessionChanged:
    """A session appeared (``kind`` created) or changed console state (``state``)."""

    session_id: str
    user_id: str
    state: str
    kind: str


@dataclass(frozen=True)
class NodeChanged:
    """A node's console state changed."""

    node_id: str
    state: str
    previous: str


@dataclass
class _Seen:
    sessions: dict[str, str] | None = None
    nodes: dict[str, str] | None = None
    unhealthy: frozenset[str] = frozenset()
    height: int = -1


class Live:
    """StreamDashboard's ticks."""

    def __init__(self, dashboard: Dashboard, nodes: NodeLister, hub: LiveHub | None = None) -> None:
        self.dashboard = dashboard
        self.nodes = nodes
        self.hub = hub

    async def events(
        self, kinds: frozenset[str], interval_s: int, token: str
    ) -> AsyncIterator[LiveEvent]:
        """The stream, forever (until the caller stops iterating)."""
        kinds = kinds or ALL
        interval_s = interval_s or DEFAULT_INTERVAL_S
        seen = _Seen()
        loop = asyncio.get_running_loop()
        with self._listen() as published:
            if CONNECTED in kinds:
                yield LiveEvent(CONNECTED, Connected(new_id(), interval_s))
            while True:
                for event in await self._tick(seen, token):
                    if event.kind in kinds:
                        yield event
                deadline = loop.time() + interval_s
                while (left := deadline - loop.time()) > 0:
                    try:
                        mesh_event = await asyncio.wait_for(published.get(), timeout=left)
                    except TimeoutError:
                        break
                    live = _from_mesh(mesh_event, seen)
                    if live is not None and live.kind in kinds:
                        yield live

    def _listen(self) -> Any:
        if self.hub is None:
            return contextlib.nullcontext(asyncio.Queue[MeshEvent]())
        return self.hub.listen()

    async def _tick(self, seen: _Seen, token: str) -> list[LiveEvent]:
        view = await self.dashboard.overview(token)
        sessions, _ = await self.dashboard.sessions.page("", "", 0, 10_000, token)
        now_sessions = {v.session_id: (console_state(v), v.owner_user_id) for v in sessions}
        events = [LiveEvent(METRICS, view)]
        events += _session_changes(seen.sessions, now_sessions)
        seen.sessions = {k: s for k, (s, _) in now_sessions.items()}
        nodes = await self._nodes(token)
        if nodes is not None:
            events += _node_changes(seen.nodes, nodes)
            seen.nodes = nodes
        down = [d for d in view.health.dependencies if d.status != HEALTHY]
        events += [LiveEvent(ALERT, d) for d in down if d.name not in seen.unhealthy]
        seen.unhealthy = frozenset(d.name for d in down)
        events += _chain_moved(seen, view)
        return events

    async def _nodes(self, token: str) -> dict[str, str] | None:
        try:
            found, _, _ = await self.nodes.page(0, NODE_PAGE, "", token)
        except (LucidError, UnavailableClusterError, OSError):
            return None  # nodes not answering: no node changes this tick
        return {n.node_id: n.state for n in found}


def _from_mesh(event: MeshEvent, seen: _Seen) -> LiveEvent | None:
    """A published event as a live event (None: nothing new to show)."""
    data = event.data
    if event.event_type == "session.state-changed" and data.get("session_id"):
        session_id = str(data["session_id"])
        state = CONSOLE_STATES.get(str(data.get("state", "")), "terminated")
        if seen.sessions is not None:
            if seen.sessions.get(session_id) == state:
                return None
            seen.sessions[session_id] = state
        kind = "created" if data.get("action") == "create" else "state"
        owner = str(data.get("owner_user_id", ""))
        return LiveEvent(SESSION, SessionChanged(session_id, owner, state, kind))
    if event.event_type == "node.registered" and data.get("node_id"):
        node_id = str(data["node_id"])
        previous = seen.nodes.get(node_id, "") if seen.nodes is not None else ""
        if seen.nodes is not None:
            seen.nodes[node_id] = "offline"
        return LiveEvent(NODE, NodeChanged(node_id, "offline", previous))
    return None


def _session_changes(
    before: dict[str, str] | None, now: dict[str, tuple[str, str]]
) -> list[LiveEvent]:
    if before is None:
        return []
    changes = []
    for session_id, (state, user_id) in now.items():
        if before.get(session_id) != state:
            kind = "created" if session_id not in before else "state"
            changes.append(LiveEvent(SESSION, SessionChanged(session_id, user_id, state, kind)))
    return changes


def _node_changes(before: dict[str, str] | None, now: dict[str, str]) -> list[LiveEvent]:
    if before is None:
        return []
    return [
        LiveEvent(NODE, NodeChanged(node_id, state, before.get(node_id, "")))
        for node_id, state in now.items()
        if before.get(node_id) != state
    ]


def _chain_moved(seen: _Seen, view: Overview) -> list[LiveEvent]:
    chain: ChainView | None = view.chain
    if chain is None or chain.local_height == seen.height:
        return []
    first = seen.height < 0
    seen.height = chain.local_height
    return [] if first else [LiveEvent(CHAIN, chain)]

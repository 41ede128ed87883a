"""Nodes from the console: listing, metrics, restart and maintenance, carried out by
the nodes cluster on behalf of the administrator. Restart and maintenance changes are
audited in admin's chain, failed or not."""

from __future__ import annotations

from dataclasses import replace

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.nodes_link import NodesAsAdmin, NodeView, Sample
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.runtime.audit import Client
from lucid.runtime.errors import ErrorCode, LucidError

STATE_FILTER = {
    "online": npb.NODE_STATE_ACTIVE,
    "offline": npb.NODE_STATE_INACTIVE,
    "maintenance": npb.NODE_STATE_MAINTENANCE,
}
TIME_RANGES = {
    "1h": npb.TIME_RANGE_1H,
    "6h": npb.TIME_RANGE_6H,
    "24h": npb.TIME_RANGE_24H,
    "7d": npb.TIME_RANGE_7D,
}


class NodeOps:
    """AdminNodeService's rules."""

    def __init__(self, nodes: NodesAsAdmin, audit: AuditLog) -> None:
        self.nodes = nodes
        self.audit = audit

    async def page(
        self, state: str, page_size: int, page_token: str, token: str
    ) -> tuple[list[NodeView], str, int]:
        """Nodes in a console state ("" for all), one page."""
        return await self.nodes.page(STATE_FILTER.get(state, 0), page_size, page_token, token)

    async def metrics(
        self, node_id: str, timeframe: str, token: str
    ) -> tuple[NodeView, list[Sample]]:
        """A node (with its latest sample) and its samples over ``timeframe`` (default 1h)."""
        time_range = TIME_RANGES.get(timeframe or "1h")
        if time_range is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"the nodes cluster keeps node metrics for 7 days; {timeframe} is too long",
            )
        node = await self.nodes.get(node_id, token)
        samples = await self.nodes.samples(node_id, time_range, token)
        return replace(node, sample=samples[-1] if samples else None), samples

    async def restart(self, node_id: str, reason: str, client: Client) -> tuple[NodeView, str]:
        """Stop, then start, at the nodes cluster."""
        entry = _entry(client, "update", node_id, {"operation": "restart", "reason": reason})
        try:
            node, message = await self.nodes.restart(node_id, reason, client.principal.token)
        except LucidError as exc:
            await self.audit.record(_failed(entry, exc))
            raise
        await self.audit.record(replace(entry, details={**entry.details, "message": message}))
        return node, message

    async def maintenance(self, node_id: str, on: bool, reason: str, client: Client) -> NodeView:
        """Puts a node into maintenance (``on``) or back to active."""
        state = npb.NODE_STATE_MAINTENANCE if on else npb.NODE_STATE_ACTIVE
        entry = _entry(client, "update", node_id, {"maintenance": on, "reason": reason})
        try:
            node = await self.nodes.set_state(node_id, state, client.principal.token)
        except LucidError as exc:
            await self.audit.record(_failed(entry, exc))
            raise
        await self.audit.record(entry)
        return node


def _entry(client: Client, action: str, node_id: str, details: dict[str, object]) -> NewEntry:
    return NewEntry.of(
        client,
        action=action,
        resource="node",
        resource_id=node_id,
        details=dict(details),
        severity="warning",
        risk_level="medium",
    )


def _failed(entry: NewEntry, error: LucidError) -> NewEntry:
    return replace(entry, result="failure", details={**entry.details, "error": error.reason})

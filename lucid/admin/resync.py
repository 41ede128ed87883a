"""ResyncBlockchain: the chain's ResyncChain, asked on behalf of the administrator (its
token forwarded), audited in admin's chain with its outcome."""

from __future__ import annotations

from dataclasses import dataclass

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.clusters import call_cluster
from lucid.blockchain.v1 import blockchain_pb2, blockchain_pb2_grpc
from lucid.runtime.audit import Client
from lucid.runtime.channels import Channels


@dataclass(frozen=True)
class ResyncOutcome:
    """What the chain did."""

    started: bool
    local_height: int
    network_height: int
    message: str


class Resyncs:
    """ResyncBlockchain."""

    def __init__(self, channels: Channels, audit: AuditLog) -> None:
        self._channels = channels
        self.audit = audit

    async def resync(self, from_height: int | None, reason: str, client: Client) -> ResyncOutcome:
        """Asks the local validator to resync; the chain refuses a height above its tip."""
        request = blockchain_pb2.ResyncChainRequest(from_height=from_height)
        reply = await call_cluster(
            self._channels,
            "blockchain",
            blockchain_pb2_grpc.BlockchainServiceStub,
            "ResyncChain",
            request,
            token=client.principal.token,
        )
        await self.audit.record(
            NewEntry.of(
                client,
                action="update",
                resource="blockchain",
                details={
                    "operation": "resync",
                    "from_height": from_height,
                    "reason": reason,
                    "started": reply.started,
                    "appended": int(reply.appended_count),
                    "rechecked": int(reply.rechecked_count),
                    "diverged_height": int(reply.diverged_height),
                },
                severity="critical" if reply.diverged_height >= 0 else "warning",
                risk_level="high",
            )
        )
        return ResyncOutcome(
            started=reply.started,
            local_height=int(reply.local_height),
            network_height=int(reply.network_height),
            message=reply.message,
        )

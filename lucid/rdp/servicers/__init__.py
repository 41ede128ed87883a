"""gRPC adapters of the rdp contract: proto ↔ domain only."""

from __future__ import annotations

from lucid.rdp.actor import Actor
from lucid.runtime.context import current_principal


def actor() -> Actor:
    """The actor of the rpc being served."""
    return Actor.of(current_principal())

"""gRPC adapters of the rdp contract: proto ↔ domain only."""

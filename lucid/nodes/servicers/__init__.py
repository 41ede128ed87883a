"""gRPC adapters of the nodes contract, one module per service."""

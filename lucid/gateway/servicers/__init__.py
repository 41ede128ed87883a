"""The gateway's gRPC servicers: one module per service."""

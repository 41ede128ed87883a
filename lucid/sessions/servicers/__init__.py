"""The sessions cluster's gRPC servicers: one module per proto service."""

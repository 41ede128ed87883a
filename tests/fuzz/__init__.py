"""Fuzz suites of issue 14: every rpc of the contract, generated from its descriptors,
over gRPC (mTLS) and over the Envoy edge."""

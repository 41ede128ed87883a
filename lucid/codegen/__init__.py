"""Code generation from the contracts: the API reference (``apidoc``) and the Envoy and
Consul configuration (``meshconfig``, ``edgeconfig``), run by ``make gen`` (and the local
edge and sidecar bootstraps, written by ``lucid up``); nothing here runs in a server."""

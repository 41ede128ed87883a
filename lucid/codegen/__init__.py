"""Code generation from the contracts: the API reference (``apidoc``) and the Envoy and
Consul configuration (``meshconfig``), run by ``make gen``; nothing here runs in a server."""

"""The runtime: everything every cluster shares, written once.

Configuration, mTLS identities, the server factory and its call pipeline
(request id, logs, authentication, authorization, validation, error mapping),
health, reflection, the service registry, client channels, and access to
MongoDB and Redis. A cluster package brings only its servicers, its schema and a
line of wiring (``lucid/<cluster>/app.py``).

The architecture calls this "the mesh package"; in the code "mesh" is only cluster
10 (``lucid.mesh``, service discovery, policies, messaging). The runtime is kept
apart from every cluster so that the import contracts can say "clusters do not
import each other" and still let every cluster use it. Generating configuration
and documentation from the contracts is ``lucid.codegen``'s, not the runtime's.
"""

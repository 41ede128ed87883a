"""The mesh runtime: everything every cluster shares, written once.

Configuration, mTLS identities, the server factory and its call pipeline
(request id, logs, authentication, authorization, validation, error mapping),
health, reflection, the service registry, client channels, and access to
MongoDB and Redis. A cluster package brings only its servicers, its schema and a
line of wiring (``lucid/<cluster>/app.py``).

The architecture calls this "the mesh package"; it is kept apart from cluster 10
(``lucid.mesh``, the mesh's own rpcs) so that the import contracts can say
"clusters do not import each other" and still let every cluster use it.
"""

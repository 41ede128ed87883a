"""Running Lucid on one machine: the local servers and the process supervisor.

``localservers`` starts FerretDB (the MongoDB wire protocol over SQLite) and
redis-server on loopback with their data under ``var/``; ``supervisor`` is
``lucid up``: local servers, every cluster, the validators and the edge as child
processes, restarted when they crash, stopped together on Ctrl-C.
"""

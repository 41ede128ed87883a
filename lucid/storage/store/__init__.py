"""Storage of the storage cluster: what talks to MongoDB, Redis, the blob volume and the
SQLite search engine (declarations, collections, cache keys, probes, search); pymongo
and redis errors become Lucid errors here."""

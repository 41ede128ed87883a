"""Pure, I/O-free primitives shared by several clusters.

Nothing here opens a socket, a file or a database: ids, clocks, key sealing and
(later) Merkle trees, TRON addresses, money and canonical encodings. Every cluster
may import this package; it imports no other part of Lucid.
"""

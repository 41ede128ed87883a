"""A local TRON network: the subset of a java-tron full node's HTTP API that tronpy uses.

A separate process (``lucid devnet tron``) on loopback. It checks what a real node
checks (txID = SHA-256 of the protobuf ``Transaction.raw``, the signature recovers
to the owner, expiration, TaPoS, duplicates), runs TRX transfers, a native USDT
TRC20 contract with energy and bandwidth accounting, and Stake 2.0, mines a block
every few seconds, counts a block solid 19 blocks deep and keeps its state on disk.
"""

"""The edge: the one-machine stand-in for Envoy at the front door.

It reads ``gen/lucid.protoset`` like Envoy's transcoder, routes each REST request
by the ``google.api.http`` annotations to the owning cluster over mTLS (as the
``edge`` identity, forwarding the caller's bearer token), converts JSON ↔
protobuf with proto field names, and renders failures as the JSON error envelope.
"""

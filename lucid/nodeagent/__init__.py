"""``lucid node-agent``: the program a node operator runs next to a worker node.

A client of the mesh: it talks to the nodes cluster only through its rpcs
(generated stubs), over mTLS, with the operator's access token.
"""

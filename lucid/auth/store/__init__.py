"""Storage of the auth cluster: MongoDB collections and Redis keys, no rules."""

"""Storage of the sessions cluster: MongoDB collections (``repository``); the blob volume
is ``blobstore``, sealed keys ``keys`` (on the runtime's key store)."""

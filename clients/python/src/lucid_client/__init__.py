"""lucid-client: the typed helper around the generated Lucid stubs (``lucid.<cluster>.v1``).

``LucidClient`` owns one channel with TLS or mTLS, the tokens of a TRON sign-in (refreshed
before they expire), a request id on every call and retries of idempotent rpcs;
``TronKey`` signs the sign-in challenge; ``error_code`` reads ``LUCID_ERR_NNNN``.
"""

from lucid_client.client import LucidClient, error_code, is_idempotent
from lucid_client.tron import TronKey

__all__ = ["LucidClient", "TronKey", "error_code", "is_idempotent"]
__version__ = "0.1.0"

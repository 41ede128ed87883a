"""A channel to Lucid with what every call needs: TLS or mTLS, the bearer token of a TRON
sign-in kept fresh, a request id, and retries of rpcs the contract marks idempotent."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.rpc import error_details_pb2, status_pb2

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid_client.tron import TronKey

REQUEST_ID_HEADER = "x-request-id"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
"""Codes after which an idempotent rpc is sent again (the server did not act, or acting
twice is harmless)."""
SIGN_IN_METHODS = frozenset(
    f"/lucid.auth.v1.AuthService/{name}"
    for name in ("IssueChallenge", "Login", "Register", "RefreshToken")
)
"""Calls that never carry a bearer token (they are how one is obtained)."""

Metadata = Sequence[tuple[str, str | bytes]]


@functools.cache
def is_idempotent(method: str) -> bool:
    """Whether the contract marks an rpc (``/pkg.Service/Method``) ``NO_SIDE_EFFECTS`` or
    ``IDEMPOTENT`` (read from the descriptors of the imported stubs)."""
    name = method.lstrip("/").replace("/", ".")
    try:
        found = descriptor_pool.Default().FindMethodByName(name)
    except KeyError:
        return False
    level = found.GetOptions().idempotency_level
    return level in (
        descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
        descriptor_pb2.MethodOptions.IDEMPOTENT,
    )


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Metadata | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _CallDetails(_Details, grpc.ClientCallDetails):  # type: ignore[misc]
    """Call details with our metadata added."""


class _Interceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    def __init__(self, client: LucidClient) -> None:
        self._client = client

    def _details(self, details: Any) -> _CallDetails:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != REQUEST_ID_HEADER]
        request_id = next(
            (str(v) for k, v in (details.metadata or ()) if k == REQUEST_ID_HEADER),
            str(uuid.uuid4()),
        )
        metadata.append((REQUEST_ID_HEADER, request_id))
        self._client.last_request_id = request_id
        if details.method not in SIGN_IN_METHODS and not any(
            k == "authorization" for k, _ in metadata
        ):
            token = self._client.access_token()
            if token:
                metadata.append(("authorization", f"Bearer {token}"))
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        new = self._details(details)
        attempts = self._client.attempts if is_idempotent(new.method) else 1
        for attempt in range(attempts):
            call = continuation(new, request)
            if call.code() not in RETRIED_CODES or attempt == attempts - 1:
                return call
            time.sleep(self._client.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def _read(path: str | Path | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


class LucidClient:
    """One channel to Lucid (the edge, or a cluster with a client certificate)."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        attempts: int = 4,
        backoff_s: float = 0.2,
        refresh_margin_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._raw = channel
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self.tokens: auth_pb2.TokenPair | None = None
        self._expires_at = 0.0
        self.refreshes = 0
        self.last_request_id = ""
        self.channel: grpc.Channel = grpc.intercept_channel(channel, _Interceptor(self))
        """The channel stubs are made on."""

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
        **options: Any,
    ) -> LucidClient:
        """TLS to ``target`` (``host:port``), trusting ``ca_file`` (the system's roots if
        none); mTLS when a client certificate and key are given."""
        if (cert_file is None) != (key_file is None):
            raise ValueError("mTLS needs both cert_file and key_file")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(ca_file),
            private_key=_read(key_file),
            certificate_chain=_read(cert_file),
        )
        channel_options = []
        if server_name:
            channel_options.append(("grpc.ssl_target_name_override", server_name))
        return cls(grpc.secure_channel(target, credentials, channel_options), **options)

    @classmethod
    def insecure(cls, target: str, **options: Any) -> LucidClient:
        """Plain h2: only for an edge on loopback started with ``edge_tls = false``."""
        return cls(grpc.insecure_channel(target), **options)

    # -- tokens ----------------------------------------------------------------------

    def sign_in(self, key: TronKey, *, timeout_s: float = 30.0) -> auth_pb2.LoginResponse:
        """Signs in with a TRON key: a challenge, its TIP-191 signature, Login."""
        auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        issued = auth.IssueChallenge(
            auth_pb2.IssueChallengeRequest(tron_address=key.address), timeout=timeout_s
        )
        answer: auth_pb2.LoginResponse = auth.Login(
            auth_pb2.LoginRequest(
                tron_address=key.address,
                message=issued.message,
                signature=key.sign_message(issued.message),
            ),
            timeout=timeout_s,
        )
        self.use_tokens(answer.tokens)
        return answer

    def use_tokens(self, tokens: auth_pb2.TokenPair) -> None:
        """Uses a token pair from elsewhere (a stored one, a magic link)."""
        with self._lock:
            self.tokens = tokens
            self._expires_at = self._clock() + tokens.expires_in

    def access_token(self) -> str:
        """The current access token, refreshed first when it expires within the margin
        ("" before sign-in)."""
        with self._lock:
            if self.tokens is None:
                return ""
            if self._clock() < self._expires_at - self.refresh_margin_s:
                return self.tokens.access_token
            refresh_token = self.tokens.refresh_token
        self.refresh(refresh_token)
        assert self.tokens is not None
        return self.tokens.access_token

    def refresh(self, refresh_token: str | None = None) -> auth_pb2.TokenPair:
        """Exchanges the refresh token for a new pair now."""
        if refresh_token is None:
            if self.tokens is None:
                raise RuntimeError("not signed in")
            refresh_token = self.tokens.refresh_token
        auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        answer: auth_pb2.RefreshTokenResponse = auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=refresh_token)
        )
        self.use_tokens(answer.tokens)
        self.refreshes += 1
        return answer.tokens

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel."""
        self._raw.close()

    def __enter__(self) -> LucidClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def error_code(error: grpc.RpcError) -> str:
    """The ``LUCID_ERR_NNNN`` of a refused call: the ``reason`` of the ``ErrorInfo`` in its
    rich status (``grpc-status-details-bin``); "" when it carries none."""
    trailers = getattr(error, "trailing_metadata", lambda: ())() or ()
    for key, value in trailers:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return str(info.reason)
    return ""

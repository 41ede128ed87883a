"""The edge's answer to requests it cannot even parse as HTTP (an over-long URL or header,
too many headers, a broken request line): the JSON error envelope naming what is wrong,
one WARNING log line, never aiohttp's plain-text page or its traceback at ERROR."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from lucid.edge.transcode import envelope, local_error
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError

log = logging.getLogger("lucid.edge")

URI_TOO_LONG = 414
HEADERS_TOO_LARGE = 431


def parse_failure(exc: BaseException | None, status: int) -> tuple[int, LucidError]:
    """The HTTP status and error of a request aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        # the parser reports the URL as a bytearray, header names and values as bytes
        if "bytearray(" in str(exc):
            field, http_status, what = "url", URI_TOO_LONG, "the URL is too long"
        else:
            field, http_status, what = "headers", HEADERS_TOO_LARGE, "a header is too long"
    else:
        field, http_status, what = "request", status, "the request is not valid HTTP"
        if "header" in str(exc).lower():
            field, http_status, what = "headers", HEADERS_TOO_LARGE, "too many headers"
    error = LucidError(
        ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
        what,
        field_violations=[FieldViolation(field, what)],
    )
    return http_status, error


class _EnvelopeHandler(RequestHandler):
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0 or status >= 500:
            return super().handle_error(request, status, exc, message)
        http_status, error = parse_failure(exc, status)
        request_id = str(uuid.uuid4())
        log.warning(
            "unparsable request",
            extra={"request_id": request_id, "status": http_status, "reason": error.message},
        )
        _, body = envelope(local_error(error), request_id=request_id, service="edge")
        response = web.json_response(
            body,
            status=http_status,
            headers={
                "x-request-id": request_id,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )
        response.force_close()
        return response


class _EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _EnvelopeHandler(self, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer unparsable requests with the envelope."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _EnvelopeServer  # same object, our handler factory
        return server

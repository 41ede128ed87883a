"""The OpenAPI document (docs/openapi/, ``make gen``): it names every REST route the edge
relays and nothing else, the edge serves it and its page at ``/api/docs``, and every
route answers as documented. Hypothesis draws requests from the document itself (path
ids, typed query values, bodies of the request schema) as an anonymous caller, a user
and an admin, and sends them through the Envoy edge to all ten clusters: the status is
one the operation documents, a 200 body has the shape of its schema (no field the schema
does not name, each value of its type), an error is the documented envelope, and a
route that needs a token never answers 200 without one."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from lucid.runtime.config import Settings
from lucid.runtime.contracts import catalog
from tests.front_door_support import DoorCalls, full_front_door

DOC_DIR = Path(__file__).resolve().parent.parent / "docs" / "openapi"
EXAMPLES_PER_OPERATION = 3
STREAM_WAIT_S = 2.0
REQUEST_TIMEOUT_S = 60.0
"""Room for a loaded machine: a slow answer is not a wrong one (the check is the answer)."""
Json = dict[str, Any]


@pytest.fixture(scope="module")
def doc() -> Json:
    return json.loads((DOC_DIR / "openapi.json").read_text())  # type: ignore[no-any-return]


def _operations(doc: Json) -> list[tuple[str, str, Json]]:
    return [
        (path, verb, op)
        for path, ops in sorted(doc["paths"].items())
        for verb, op in sorted(ops.items())
    ]


# -- the document ------------------------------------------------------------------------


def test_the_document_names_every_relayed_route_and_no_other(doc: Json) -> None:
    from lucid.codegen.openapi import swagger_path

    wanted = {
        (route.verb.lower(), swagger_path(route.template)): info.path
        for info in catalog().methods.values()
        if info.client_callable
        for route in info.routes
    }
    documented = {(verb, path): op["x-lucid-rpc"] for path, verb, op in _operations(doc)}
    assert documented == wanted
    for path, verb, op in _operations(doc):
        info = catalog().methods[op["x-lucid-rpc"]]
        assert op["security"] == ([] if info.access.public else [{"bearer": []}]), path
        assert "200" in op["responses"] and "500" not in op["responses"], (verb, path)


def test_every_reference_resolves(doc: Json) -> None:
    def refs(value: Any) -> list[str]:
        if isinstance(value, dict):
            own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
            return own + [r for v in value.values() for r in refs(v)]
        if isinstance(value, list):
            return [r for v in value for r in refs(v)]
        return []

    missing = {r for r in refs(doc) if r.removeprefix("#/definitions/") not in doc["definitions"]}
    assert missing == set()


def test_the_page_renders_every_operation(doc: Json) -> None:
    page = (DOC_DIR / "index.html").read_text()
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "<link" not in page and "http://" not in page
    for _, _, op in _operations(doc):
        assert f'id="op-{op["operationId"]}"' in page


# -- through the edge --------------------------------------------------------------------


@dataclass
class Caller(DoorCalls):
    """The front door's calls and what was wrong with their answers."""

    failures: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def front(settings: Settings) -> AsyncIterator[Caller]:
    async with full_front_door(settings, "openapi") as door:
        caller = Caller(door, asyncio.get_running_loop(), timeout_s=2 * REQUEST_TIMEOUT_S)
        yield caller
        await caller.close()


async def test_the_edge_serves_the_document_and_its_page(front: Caller, doc: Json) -> None:
    client = await front.session()
    async with client.http.get(f"{front.door.url}/api/docs/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == doc
    for path in ("/api/docs", "/api/docs/"):
        async with client.http.get(front.door.url + path) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "default-src 'none'" in response.headers["content-security-policy"]
            text = await response.text()
            assert "Lucid REST API" in text and 'id="op-AuthService_GetProfile"' in text


def _resolve(schema: Json, doc: Json) -> Json:
    while "$ref" in schema:
        schema = doc["definitions"][schema["$ref"].removeprefix("#/definitions/")]
    return schema


def conforms(value: Any, schema: Json, doc: Json, where: str = "$") -> list[str]:
    """What is wrong with a JSON value against a Swagger schema (empty: nothing)."""
    schema = _resolve(schema, doc)
    kind = schema.get("type")
    if kind is None and "properties" in schema:
        kind = "object"
    problems: list[str] = []
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        problems += [
            f"{where}.{key}: missing" for key in schema.get("required", ()) if key not in value
        ]
        for key, item in value.items():
            if properties and key in properties:
                problems += conforms(item, properties[key], doc, f"{where}.{key}")
            elif isinstance(extra, dict):
                problems += conforms(item, extra, doc, f"{where}.{key}")
            elif properties:
                problems.append(f"{where}.{key}: not in the schema")
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not an array"]
        for i, item in enumerate(value):
            problems += conforms(item, schema.get("items", {}), doc, f"{where}[{i}]")
        return problems
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: {value!r} is not a string"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} is not one of the enum"]
        if schema.get("format") == "byte":
            try:
                base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_")
            except ValueError:
                return [f"{where}: not base64"]
        return []
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not an integer"]
    if kind == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or value in {
            "NaN",
            "Infinity",
            "-Infinity",
        }
        return [] if ok else [f"{where}: {value!r} is not a number"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a boolean"]
    return []  # a free value (google.protobuf.Value)


def test_the_shape_check_names_what_is_wrong(doc: Json) -> None:
    schema = {"$ref": "#/definitions/v1GetSessionResponse"}
    good = {"session": {"session_id": "x", "name": "a session"}}
    assert conforms(good, schema, doc) == []
    assert conforms({"session": {"session_id": 7}}, schema, doc) == [
        "$.session.session_id: 7 is not a string"
    ]
    assert conforms({"session": {"nope": 1}}, schema, doc) == ["$.session.nope: not in the schema"]
    assert conforms([], schema, doc) == ["$: list, not an object"]
    envelope = {"$ref": "#/definitions/lucidErrorEnvelope"}
    error = {
        "code": "LUCID_ERR_2001",
        "message": "no token",
        "request_id": "r",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "service": "auth",
        "version": "v1",
    }
    assert conforms({"error": error}, envelope, doc) == []
    assert conforms({"error": {**error, "code": 2001}}, envelope, doc) == [
        "$.error.code: 2001 is not a string"
    ]
    del error["request_id"]
    assert conforms({"error": error}, envelope, doc) == ["$.error.request_id: missing"]


def _scalar(spec: Json) -> st.SearchStrategy[Any]:
    """A valid-shaped JSON value of a scalar parameter or field."""
    kind, fmt = spec.get("type"), spec.get("format")
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=0, max_value=2000)
    if kind == "number":
        return st.floats(min_value=0, max_value=1e6, allow_nan=False)
    if fmt in {"int64", "uint64"}:
        return st.integers(min_value=0, max_value=10**6).map(str)
    if fmt == "date-time":
        return st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.isoformat().replace("+00:00", "Z"))
    if fmt == "byte":
        return st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode())
    return st.one_of(
        st.uuids(version=4).map(str),
        st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=20),
        st.just("T" + "1" * 33),  # shaped like a TRON address
    )


def _value(schema: Json, doc: Json, depth: int = 0) -> st.SearchStrategy[Any]:
    """A valid-shaped JSON value of a body schema (some fields, each of its type)."""
    schema = _resolve(schema, doc)
    kind = schema.get("type")
    if kind == "array":
        if depth > 2:
            return st.just([])
        return st.lists(_value(schema.get("items", {}), doc, depth + 1), max_size=2)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if depth > 2 or not properties:
            return st.just({})
        return st.fixed_dictionaries(
            {},
            optional={name: _value(spec, doc, depth + 1) for name, spec in properties.items()},
        )
    return _scalar(schema)


@dataclass(frozen=True)
class Request:
    path: str
    query: list[tuple[str, str]]
    body: Any


def _request(path: str, op: Json, doc: Json) -> st.SearchStrategy[Request]:
    params = op.get("parameters") or []
    path_params = {p["name"]: _scalar(p).map(str) for p in params if p["in"] == "path"}
    query: dict[str, st.SearchStrategy[list[tuple[str, str]]]] = {}
    for p in params:
        if p["in"] != "query":
            continue
        name = p["name"]
        if p.get("type") == "array":
            query[name] = st.lists(_scalar(p["items"]).map(str), max_size=2).map(
                lambda values, n=name: [(n, v) for v in values]
            )
        else:
            query[name] = _scalar(p).map(
                lambda v, n=name: [(n, json.dumps(v) if isinstance(v, bool) else str(v))]
            )
    bodies = [p for p in params if p["in"] == "body"]
    body = _value(bodies[0]["schema"], doc) if bodies else st.none()

    def fill(values: dict[str, str]) -> str:
        out = path
        for name, value in values.items():
            out = out.replace("{" + name + "}", value)
        return out

    return st.builds(
        lambda p, q, b: Request(p, [pair for pairs in q.values() for pair in pairs], b),
        st.fixed_dictionaries(path_params).map(fill),
        st.fixed_dictionaries({}, optional=query),
        body,
    )


async def _answer(
    front: Caller, doc: Json, verb: str, op: Json, request: Request, who: str
) -> str | None:
    """One request through the edge; what is wrong with its answer, or None."""
    client = await front.session()
    token = front.door.caller(who).token
    headers = {"authorization": f"Bearer {token}"} if token else {}
    data = None
    if request.body is not None:
        headers["content-type"] = "application/json"
        data = json.dumps(request.body)
    label = f"{verb.upper()} {request.path} {request.query} as {who}"
    streaming = op.get("produces") == ["application/x-ndjson"]
    async with client.http.request(
        verb.upper(),
        front.door.url + request.path,
        params=request.query,
        data=data,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    ) as response:
        status = response.status
        front.statuses[status] = front.statuses.get(status, 0) + 1
        label += f": HTTP {status}"
        if str(status) not in op["responses"]:
            return f"{label}: status not documented ({(await response.read())[:200]!r})"
        if op["security"] and who == "anonymous" and status == 200:
            return f"{label}: a route that needs a token answered without one"
        if status == 200 and streaming:
            with contextlib.suppress(TimeoutError):  # a stream with nothing to send yet
                await asyncio.wait_for(response.content.readline(), STREAM_WAIT_S)
            return None
        if response.content_type != "application/json":
            return f"{label}: {response.content_type}, not JSON"
        body = await response.json()
    schema = op["responses"][str(status)].get("schema", {})
    problems = conforms(body, schema, doc)
    return f"{label}: {'; '.join(problems[:5])}" if problems else None


CALLERS = st.sampled_from(("anonymous", "user", "admin"))
BOUNDED = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)


def _check(front: Caller, doc: Json, path: str, verb: str, op: Json) -> None:
    @BOUNDED
    @given(request=_request(path, op, doc), who=CALLERS)
    def prop(request: Request, who: str) -> None:
        problem = front.run(_answer(front, doc, verb, op, request, who))
        if problem:
            front.failures.append(problem)

    prop()


async def test_every_route_answers_as_documented(front: Caller, doc: Json) -> None:
    def run_all() -> None:
        for path, verb, op in _operations(doc):
            _check(front, doc, path, verb, op)

    await asyncio.to_thread(run_all)
    assert "\n".join(front.failures) == ""
    # the requests reached the clusters: not every answer was a refusal
    assert front.statuses.get(200, 0) > 0, front.statuses

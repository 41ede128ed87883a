"""Property-based fuzzing of the front door (issue 8 item 4, issue 14): every routed rpc
with malformed bodies, query values and path ids, and every rpc over grpc-web with
malformed protobuf, as an anonymous caller, a user and an admin. Whatever comes in: no
5xx (every rpc is built: not even 501 ``LUCID_ERR_5011``), never UNKNOWN or INTERNAL,
every REST error is the JSON envelope, and nothing stored changes.
Then every client-callable rpc with valid-shaped messages generated from its descriptor
(REST or grpc-web): the same answers, and a refused one changes nothing its cluster stores.

Hypothesis drives a synchronous property from a worker thread; each example's requests
run on the test's event loop, where the servers live. Examples are bounded (a few per
route) so that the whole module runs in about two minutes.
"""

from __future__ import annotations

import asyncio
import json
import string
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import hypothesis.strategies as st
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings

from lucid.runtime.config import Settings
from lucid.runtime.contracts import HttpRoute, MethodInfo, catalog
from tests.edge_probe import grpc_web_body, grpc_web_status
from tests.front_door_support import DoorCalls, full_front_door
from tests.fuzz import state
from tests.fuzz.messages import json_values, message_of, never_valid_protobuf, odd_text

EXAMPLES_PER_ROUTE = 3
BAD_STATUSES = {"2", "13"}  # UNKNOWN, INTERNAL
NO_TRON_NETWORK = "LUCID_ERR_4010"
"""The mesh of this module runs no TRON network: payments answers 503 with this code,
its contract's answer for an unreachable payment network."""


@dataclass
class Fuzzer(DoorCalls):
    """The front door's calls, what the answers were and what the clusters stored."""

    status: int = 0
    """The HTTP status of the last REST answer."""
    answers: Counter[str] = field(default_factory=Counter)
    """Valid-shaped requests by transport and whether they were refused."""
    failures: list[str] = field(default_factory=list)
    last: dict[str, state.Stored] = field(default_factory=dict)
    """Per cluster, what it stored after the last refused request (the next "before")."""

    def headers(self, who: str) -> dict[str, str]:
        """Authorization for an anonymous caller, a user or an admin (a fresh user each)."""
        token = self.door.caller(who).token
        return {"authorization": f"Bearer {token}"} if token else {}

    def check(self, problem: str | None) -> None:
        """Keeps what was wrong with one answer."""
        if problem:
            self.failures.append(problem)


@pytest.fixture(scope="module")
async def fuzzer(settings: Settings) -> AsyncIterator[Fuzzer]:
    """All ten clusters (their own database) behind the Python edge; the chain makes no
    blocks while nothing is submitted, so stored counts stand still unless a request
    changes them."""
    async with full_front_door(settings, "fuzz") as door:
        fuzz = Fuzzer(door, asyncio.get_running_loop())
        yield fuzz
        await fuzz.close()


def _routes() -> list[tuple[MethodInfo, HttpRoute]]:
    methods = sorted(catalog().methods.values(), key=lambda m: m.path)
    return [(info, route) for info in methods for route in info.routes]


def _malformed_body(info: MethodInfo) -> st.SearchStrategy[bytes]:
    """Bodies that cannot be a valid request: not JSON, not an object, an unknown field,
    or the request's own fields with values of any type next to an unknown one."""
    fields = [f.name for f in catalog().pool.FindMessageTypeByName(info.input_type).fields]
    known = st.dictionaries(st.sampled_from(fields), json_values, max_size=4) if fields else None
    # An unknown field set to null is not malformed for certain (ProtoJSON reads null as
    # "absent"), so the unknown field always carries a value.
    objects = st.fixed_dictionaries({"__fuzz__": json_values.filter(lambda v: v is not None)})
    if known is not None:
        objects = st.tuples(known, objects).map(lambda pair: {**pair[0], **pair[1]})
    return st.one_of(
        st.binary(max_size=200).filter(_never_a_request),
        st.text(max_size=80).map(str.encode).filter(_never_a_request),
        json_values.map(lambda v: json.dumps(v).encode()).filter(_never_a_request),
        objects.map(lambda v: json.dumps(v).encode()),
        st.just(b"{" * 50),
    )


def _never_a_request(body: bytes) -> bool:
    """Whether a body is malformed for certain: not empty (no body is a valid empty request),
    and not JSON that is an object or null."""
    if not body.strip():
        return False
    try:
        value = json.loads(body)
    except ValueError:
        return True
    return value is not None and not isinstance(value, dict)


def _query(info: MethodInfo) -> st.SearchStrategy[dict[str, str]]:
    fields = [f.name for f in catalog().pool.FindMessageTypeByName(info.input_type).fields]
    names = st.sampled_from(fields) if fields else st.text(string.ascii_lowercase, min_size=1)
    return st.dictionaries(
        st.one_of(names, st.text(string.ascii_letters + "._[]", min_size=1, max_size=20)),
        odd_text,
        max_size=3,
    )


def _path(route: HttpRoute) -> st.SearchStrategy[str]:
    """The route's template with every variable a fuzzed id (one path segment each)."""
    parts = route.template.replace("}", "{").split("{")
    variables = len(parts) // 2
    ids = st.lists(
        odd_text.filter(bool).map(lambda s: quote(s, safe="")),
        min_size=variables,
        max_size=variables,
    )

    def fill(values: list[str]) -> str:
        out = list(parts)
        for i, value in enumerate(values):
            out[2 * i + 1] = value
        return "".join(out)

    return ids.map(fill)


async def _rest(
    fuzz: Fuzzer,
    route: HttpRoute,
    path: str,
    query: dict[str, str],
    body: bytes | None,
    who: str,
    *,
    streams: bool = False,
) -> str | None:
    """One request; a description of what is wrong with the answer, or ``None``. The
    route of a server stream (``streams``) may stay open: an accepted request."""
    try:
        return await asyncio.wait_for(_rest_answer(fuzz, route, path, query, body, who), 10)
    except TimeoutError:
        fuzz.status = 200
        return None if streams else f"{route.verb} {path[:120]} as {who}: no answer in 10 s"


async def _rest_answer(
    fuzz: Fuzzer, route: HttpRoute, path: str, query: dict[str, str], body: bytes | None, who: str
) -> str | None:
    client = await fuzz.session()
    headers = fuzz.headers(who)
    if body is not None:
        headers["content-type"] = "application/json"
    async with client.http.request(
        route.verb, fuzz.door.url + path, params=query, data=body, headers=headers
    ) as response:
        raw = await response.read()
        fuzz.status = response.status
        label = f"{route.verb} {path[:120]} {query} as {who}: HTTP {response.status}"
        if response.content_type != "application/json":
            return None if response.status < 400 else f"{label}: not the JSON envelope"
        try:
            data = json.loads(raw)
        except ValueError:
            return f"{label}: body is not JSON"
        if response.status >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            if not isinstance(error, dict) or not error.get("code"):
                return f"{label}: not the JSON envelope"
            if "Available Fields" in raw.decode(errors="replace"):
                return f"{label}: the error lists the schema"
            if response.status >= 500 and error["code"] != NO_TRON_NETWORK:
                return f"{label}: {error['code']} {error.get('message', '')[:200]}"
    return None


async def _grpc_web(fuzz: Fuzzer, info: MethodInfo, payload: bytes, who: str) -> str | None:
    client = await fuzz.session()
    headers = {"content-type": "application/grpc-web+proto", **fuzz.headers(who)}
    async with client.http.post(
        fuzz.door.url + info.path, data=grpc_web_body(payload), headers=headers
    ) as response:
        body = await response.read()
        status = grpc_web_status(response.headers, body)
    label = f"grpc-web {info.path} as {who}: HTTP {response.status} grpc-status {status}"
    if response.status >= 500 or status in BAD_STATUSES:
        return label
    if status == "0":
        return f"{label}: a malformed message was accepted"
    return None


callers = st.sampled_from(("anonymous", "user", "admin"))
BOUNDED = settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    database=None,  # nothing written to .hypothesis/
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
"""A few examples per route and no shrinking: the whole catalog within the time budget."""


def _fuzz_rest(fuzz: Fuzzer, info: MethodInfo, route: HttpRoute) -> None:
    body = _malformed_body(info) if route.body else st.none()

    @BOUNDED
    @given(path=_path(route), query=_query(info), body=body, who=callers)
    def prop(path: str, query: dict[str, str], body: bytes | None, who: str) -> None:
        answer = _rest(fuzz, route, path, query, body, who, streams=info.server_streaming)
        fuzz.check(fuzz.run(answer))

    prop()


def _fuzz_grpc_web(fuzz: Fuzzer, info: MethodInfo) -> None:
    @BOUNDED
    @given(payload=never_valid_protobuf, who=callers)
    def prop(payload: bytes, who: str) -> None:
        fuzz.check(fuzz.run(_grpc_web(fuzz, info, payload, who)))

    prop()


async def _unharmed(fuzz: Fuzzer, run_all: Callable[[], None]) -> None:
    """Runs the properties; no answer was wrong and nothing stored changed."""
    fuzz.failures = []
    mesh = fuzz.door.mesh
    before = await state.counts(mesh, audited_failures=False)
    await asyncio.to_thread(run_all)
    assert "\n".join(fuzz.failures) == ""
    after = await state.counts(mesh, audited_failures=False)
    changed = [name for name in after if after[name] != before.get(name, 0)]
    db = mesh.servers["auth"].runtime.datastores.db
    added = {name: await db[name].find({}, {"_id": 0}).to_list(5) for name in changed}
    assert after == before, f"stored documents changed: {added}"


async def test_malformed_rest_requests_never_crash_or_change_state(fuzzer: Fuzzer) -> None:
    def run_all() -> None:
        for info, route in _routes():
            _fuzz_rest(fuzzer, info, route)

    await _unharmed(fuzzer, run_all)


async def test_malformed_grpc_web_messages_never_crash_or_change_state(fuzzer: Fuzzer) -> None:
    def run_all() -> None:
        for info in sorted(catalog().methods.values(), key=lambda m: m.path):
            if not info.client_streaming:
                _fuzz_grpc_web(fuzzer, info)

    await _unharmed(fuzzer, run_all)


VALID_EXAMPLES_PER_RPC = 2


def _rest_of(route: HttpRoute, request: Message) -> tuple[str, dict[str, str], bytes | None]:
    """A valid-shaped message as a REST request of ``route``: its path variables from the
    message (a fresh id when empty), the rest as the JSON body or as query values."""
    data = json_format.MessageToDict(request, preserving_proto_field_name=True)
    parts = route.template.replace("}", "{").split("{")
    for i in range(1, len(parts), 2):
        value = data.pop(parts[i].split("=")[0], None)
        text = value if isinstance(value, str) and value else str(value or uuid.uuid4())
        parts[i] = quote(text, safe="")
    path = "".join(parts)
    if route.body:
        return path, {}, json.dumps(data).encode()
    query = {
        name: json.dumps(value) if isinstance(value, bool) else str(value)
        for name, value in data.items()
        if isinstance(value, str | int | float | bool)
    }
    return path, query, None


async def _valid_checked(
    fuzz: Fuzzer, info: MethodInfo, request: Message, who: str, rest: bool
) -> str | None:
    """A valid-shaped message over REST or grpc-web: no 5xx, never UNKNOWN or INTERNAL,
    and if it is refused, the owning cluster stores what it stored before."""
    mesh = fuzz.door.mesh
    before = fuzz.last.pop(info.cluster, None) or await state.stored(mesh, info.cluster)
    route = info.routes[0]
    try:
        path, query, body = _rest_of(route, request)
    except (json_format.Error, ValueError):  # a time ProtoJSON cannot write: grpc-web only
        rest = False
    if rest:
        if problem := await _rest(fuzz, route, path, query, body, who):
            return problem
        label, refused = f"{route.verb} {path[:120]} as {who}", fuzz.status >= 400
    else:
        payload = request.SerializeToString()
        client = await fuzz.session()
        headers = {"content-type": "application/grpc-web+proto", **fuzz.headers(who)}
        async with client.http.post(
            fuzz.door.url + info.path, data=grpc_web_body(payload), headers=headers
        ) as response:
            status = grpc_web_status(response.headers, await response.read())
        label = f"grpc-web {info.path} as {who} ({payload[:40]!r}): HTTP {response.status} {status}"
        if (response.status >= 500 and response.status != 501) or status in BAD_STATUSES:
            return label
        refused = status != "0"
    fuzz.answers[f"{'rest' if rest else 'grpc-web'} {'refused' if refused else 'ok'}"] += 1
    if not refused:  # may have changed any cluster (through calls of its own)
        fuzz.last.clear()
        return None
    after = await state.stored(mesh, info.cluster)
    fuzz.last[info.cluster] = after
    change = after.changed_since(before)
    return f"{label}: {change}" if change else None


def _fuzz_valid(fuzz: Fuzzer, info: MethodInfo, rest_first: bool) -> None:
    """Hypothesis starts from the simplest example (``False``): ``rest_first`` alternates
    across rpcs so that both transports carry first examples."""
    desc = catalog().pool.FindMessageTypeByName(info.input_type)

    @settings(BOUNDED, max_examples=VALID_EXAMPLES_PER_RPC)
    @given(request=message_of(desc), who=callers, flip=st.booleans())
    def prop(request: Message, who: str, flip: bool) -> None:
        fuzz.check(fuzz.run(_valid_checked(fuzz, info, request, who, rest_first != flip)))

    prop()


async def test_valid_shaped_requests_never_crash_nor_change_state_when_refused(
    fuzzer: Fuzzer,
) -> None:
    """Every rpc a client may call through the edge (but server streams, which stay open
    and are fuzzed over gRPC in test_grpc_fuzz), with messages generated from its
    descriptor, as REST (its first route) or grpc-web. Runs last in this module: an
    accepted request may change what is stored."""
    fuzzer.failures = []
    methods = [
        info
        for info in sorted(catalog().methods.values(), key=lambda m: m.path)
        if info.client_callable and not info.client_streaming and not info.server_streaming
    ]

    def run_all() -> None:
        for index, info in enumerate(methods):
            _fuzz_valid(fuzzer, info, rest_first=index % 2 == 0)

    await asyncio.to_thread(run_all)
    print(f"\nvalid-shaped through the edge: {dict(fuzzer.answers)}")
    assert "\n".join(fuzzer.failures) == ""
    for transport in ("rest", "grpc-web"):  # both carried a fair share
        sent = sum(n for key, n in fuzzer.answers.items() if key.startswith(transport + " "))
        assert sent >= len(methods) // 3, fuzzer.answers

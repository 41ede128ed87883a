"""Path templates of google.api.http, and the route table of the whole contract."""

from __future__ import annotations

import pytest

from lucid.edge.routes import TemplateError, build_routes, compile_template, find
from lucid.runtime.contracts import catalog


def _match(template: str, path: str) -> dict[str, str] | None:
    pattern, variables, _ = compile_template(template)
    found = pattern.fullmatch(path)
    if not found:
        return None
    return {field: found.group(group) for group, field in variables}


def test_simple_variables() -> None:
    assert _match("/api/v1/sessions/{session_id}/start", "/api/v1/sessions/abc/start") == {
        "session_id": "abc"
    }
    assert _match("/api/v1/sessions/{session_id}/start", "/api/v1/sessions/a/b/start") is None


def test_nested_field_paths_and_sub_templates() -> None:
    assert _match("/v1/{book.name=shelves/*/books/*}", "/v1/shelves/1/books/2") == {
        "book.name": "shelves/1/books/2"
    }
    assert _match("/v1/{name=files/**}", "/v1/files/a/b/c") == {"name": "files/a/b/c"}


def test_custom_verbs() -> None:
    assert _match("/api/v1/auth/keys:rotate", "/api/v1/auth/keys:rotate") == {}
    assert _match("/v1/{key}:flush", "/v1/lucid:auth:x:flush") == {"key": "lucid:auth:x"}


@pytest.mark.parametrize("bad", ["no-slash", "/a/{Bad}", "/a/{x", "/a/b*c"])
def test_bad_templates_are_refused(bad: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(bad)


def test_the_whole_contract_compiles_without_duplicate_bindings() -> None:
    table = build_routes(catalog())
    assert sum(len(routes) for routes in table.values()) >= 300


def test_literal_segments_win_over_variables() -> None:
    table = build_routes(catalog())
    route, _ = find(table, "GET", "/api/v1/chain/blocks/latest") or (None, None)
    assert route is not None
    literal = find(table, "GET", "/api/v1/nodes/pools")
    assert literal is not None and "Pool" in literal[0].method.service
    variable = find(table, "GET", "/api/v1/nodes/0b5a3d38-9a8f-4a47-8f4e-0e8f5a1c2b3d")
    assert variable is not None and variable[1] == {
        "node_id": "0b5a3d38-9a8f-4a47-8f4e-0e8f5a1c2b3d"
    }


def test_percent_encoded_variables_are_decoded() -> None:
    table = build_routes(catalog())
    found = find(table, "GET", "/api/v1/cache/keys/lucid%3Aauth%3Ax")
    assert found is not None
    assert list(found[1].values()) == ["lucid:auth:x"]

"""Writes the OpenAPI document of the edge's REST routes, and its rendered page.

``make gen`` runs ``protoc-gen-openapiv2`` over the contracts (one merged Swagger 2.0
document, proto field names as the edge prints them) and then this module:
``python -m lucid.codegen.openapi <raw.json> <lucid.protoset> <version> <out-dir>``.
It keeps only the routes the edge relays to clients (a service-only rpc has no REST
route there), says who may call each (bearer token or public, the rpc's access rule),
documents the errors the edge answers with — every one the JSON error envelope, with
the statuses of ``lucid.runtime.envelope`` (never a 500: an internal error is a bug) —
and writes ``openapi.json`` and ``index.html``, a page rendered here (plain HTML: no
script, no style sheet, nothing fetched; the edge's content security policy allows
none), both served by the edge at ``/api/docs``.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lucid.common.v1 import access_pb2
from lucid.runtime.contracts import Catalog, MethodInfo

Json = dict[str, Any]

ERROR_RESPONSES: Mapping[str, str] = {
    "400": "Invalid argument, invalid state or a malformed body (LUCID_ERR_1xxx).",
    "401": "No token, or a token that is expired, revoked or not signed by auth.",
    "403": "The caller's role or the plane policy does not allow this call.",
    "404": "Not found.",
    "409": "Already exists, or a concurrent change won.",
    "413": "The body is larger than the edge accepts.",
    "415": "A body that is not application/json.",
    "429": "Rate limited: retry after the `retry-after` header.",
    "501": "Part of the contract, not built yet (LUCID_ERR_5011).",
    "503": "A cluster or a store it needs is unavailable; retry.",
    "504": "The call ran past its deadline.",
}
"""The statuses of the error envelope (gRPC status → HTTP as ``lucid.runtime.envelope``)."""

ENVELOPE = "lucidErrorEnvelope"
ENVELOPE_SCHEMA: Json = {
    "type": "object",
    "description": "Every error the edge answers with.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id", "timestamp", "service", "version"],
            "properties": {
                "code": {"type": "string", "description": "LUCID_ERR_NNNN"},
                "message": {"type": "string"},
                "details": {"type": "object"},
                "request_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "service": {"type": "string"},
                "version": {"type": "string"},
            },
        }
    },
}
SECURITY: Json = {
    "bearer": {
        "type": "apiKey",
        "in": "header",
        "name": "authorization",
        "description": "`Bearer <access token>` from auth's TRON sign-in.",
    }
}
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")


def swagger_path(template: str) -> str:
    """A ``google.api.http`` template as Swagger names it (``{name=a/*}`` → ``{name}``)."""
    return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", template)


def _relayed(catalog: Catalog) -> dict[tuple[str, str], MethodInfo]:
    """(verb, Swagger path) → rpc, for every route the edge relays to clients."""
    found: dict[tuple[str, str], MethodInfo] = {}
    for info in catalog.methods.values():
        if not info.client_callable:
            continue
        for route in info.routes:
            found[(route.verb.lower(), swagger_path(route.template))] = info
    return found


def _access(info: MethodInfo) -> str:
    rule = info.access
    if rule.public:
        return "public"
    if rule.permission:
        return access_pb2.Permission.Name(rule.permission).removeprefix("PERMISSION_").lower()
    return "signed-in"


def build(raw: Json, catalog: Catalog, version: str) -> Json:
    """The published document from protoc-gen-openapiv2's."""
    relayed = _relayed(catalog)
    paths: Json = {}
    for path, operations in sorted(raw["paths"].items()):
        for verb, operation in sorted(operations.items()):
            info = relayed.get((verb, path))
            if info is None:
                continue
            op = dict(operation)
            op["operationId"] = f"{info.service.rsplit('.', 1)[1]}_{info.name}"
            op["security"] = [] if info.access.public else [{"bearer": []}]
            op["x-lucid-rpc"] = info.path
            op["x-lucid-access"] = _access(info)
            if info.server_streaming:
                op["produces"] = ["application/x-ndjson"]
            responses = {k: v for k, v in op.get("responses", {}).items() if k == "200"}
            for status, text in ERROR_RESPONSES.items():
                responses[status] = {
                    "description": text,
                    "schema": {"$ref": f"#/definitions/{ENVELOPE}"},
                }
            op["responses"] = responses
            paths.setdefault(path, {})[verb] = op
    definitions = dict(raw.get("definitions", {}))
    definitions[ENVELOPE] = ENVELOPE_SCHEMA
    used = _referenced({"paths": paths}, definitions)
    return {
        "swagger": "2.0",
        "info": {
            "title": "Lucid REST API",
            "version": version,
            "description": (
                "The REST routes of the Lucid edge (Envoy), transcoded to the clusters' gRPC "
                "rpcs. Field names are the proto field names. Errors are the JSON envelope."
            ),
        },
        "basePath": "/",
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": SECURITY,
        "tags": sorted(
            {t for ops in paths.values() for op in ops.values() for t in op.get("tags", ())}
        ),
        "paths": paths,
        "definitions": {name: definitions[name] for name in sorted(used)},
    }


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            yield ref.removeprefix("#/definitions/")
        for inner in value.values():
            yield from _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs(inner)


def _referenced(root: Json, definitions: Json) -> set[str]:
    """Every definition reachable from ``root``."""
    seen: set[str] = set()
    todo = list(_refs(root))
    while todo:
        name = todo.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        todo.extend(_refs(definitions[name]))
    return seen


# -- the rendered page -------------------------------------------------------------------


def _schema_text(schema: Json | None) -> str:
    if not schema:
        return "—"
    ref = schema.get("$ref")
    if ref:
        name = ref.removeprefix("#/definitions/")
        return f'<a href="#def-{html.escape(name)}">{html.escape(name)}</a>'
    kind = schema.get("type", "object")
    if kind == "array":
        return f"array of {_schema_text(schema.get('items'))}"
    if "enum" in schema:
        return f"{kind}: " + ", ".join(html.escape(str(v)) for v in schema["enum"])
    fmt = schema.get("format")
    return html.escape(f"{kind} ({fmt})" if fmt else str(kind))


def _text(value: Any) -> str:
    return html.escape(str(value or "")).replace("\n", "<br>")


def _operation_html(path: str, verb: str, op: Json) -> list[str]:
    anchor = html.escape(op["operationId"])
    out = [
        f'<article id="op-{anchor}"><h3><code>{verb.upper()} {html.escape(path)}</code></h3>',
        f"<p>{_text(op.get('summary'))}</p><p>rpc <code>{html.escape(op['x-lucid-rpc'])}"
        f"</code>; who may call: <strong>{html.escape(op['x-lucid-access'])}</strong>"
        f"{'' if not op['security'] else ' (bearer token)'}</p>",
    ]
    params = op.get("parameters") or []
    if params:
        out.append(
            "<table><caption>Parameters</caption><tr><th>name</th><th>in</th>"
            "<th>type</th><th>required</th><th>description</th></tr>"
        )
        for p in params:
            schema = p.get("schema") or {k: p[k] for k in ("type", "format") if k in p}
            if "items" in p:
                schema = {"type": "array", "items": p["items"]}
            out.append(
                f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                f"<td>{_schema_text(schema)}</td><td>{'yes' if p.get('required') else ''}"
                f"</td><td>{_text(p.get('description'))}</td></tr>"
            )
        out.append("</table>")
    out.append(
        "<table><caption>Responses</caption><tr><th>status</th><th>body</th><th>when</th></tr>"
    )
    for status, response in op["responses"].items():
        out.append(
            f"<tr><td>{status}</td><td>{_schema_text(response.get('schema'))}</td>"
            f"<td>{_text(response.get('description'))}</td></tr>"
        )
    out.append("</table></article>")
    return out


def render_html(doc: Json) -> str:
    """One page: each route with who may call it, parameters and answers; then the types."""
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc['info']['title'])} {html.escape(doc['info']['version'])}</title>",
        "</head><body>",
        f"<h1>{html.escape(doc['info']['title'])} <small>{html.escape(doc['info']['version'])}"
        "</small></h1>",
        f"<p>{_text(doc['info']['description'])} The machine-readable document: "
        '<a href="/api/docs/openapi.json">openapi.json</a> (OpenAPI 2.0).</p>',
    ]
    by_tag: dict[str, list[tuple[str, str, Json]]] = {}
    for path, operations in doc["paths"].items():
        for verb, op in operations.items():
            for tag in op.get("tags") or ["other"]:
                by_tag.setdefault(tag, []).append((path, verb, op))
    out.append("<nav><h2>Services</h2><ul>")
    for tag in sorted(by_tag):
        out.append(f'<li><a href="#tag-{html.escape(tag)}">{html.escape(tag)}</a></li>')
    out.append("</ul></nav><main>")
    for tag in sorted(by_tag):
        out.append(f'<section id="tag-{html.escape(tag)}"><h2>{html.escape(tag)}</h2>')
        for path, verb, op in sorted(by_tag[tag]):
            out += _operation_html(path, verb, op)
        out.append("</section>")
    out.append("<section><h2>Types</h2>")
    for name, schema in doc["definitions"].items():
        out.append(f'<article id="def-{html.escape(name)}"><h3>{html.escape(name)}</h3>')
        out.append(f"<p>{_text(schema.get('description'))}</p>")
        properties = schema.get("properties") or {}
        if properties:
            out.append("<table><tr><th>field</th><th>type</th><th>description</th></tr>")
            for field, spec in properties.items():
                out.append(
                    f"<tr><td><code>{html.escape(field)}</code></td><td>{_schema_text(spec)}</td>"
                    f"<td>{_text(spec.get('description') or spec.get('title'))}</td></tr>"
                )
            out.append("</table>")
        elif "enum" in schema:
            out.append(f"<p>{_schema_text(schema)}</p>")
        out.append("</article>")
    out.append("</section></main></body></html>")
    return "\n".join(out) + "\n"


def main() -> None:
    """``python -m lucid.codegen.openapi raw.json lucid.protoset version out-dir``."""
    raw_path, protoset, version, out_dir = sys.argv[1:5]
    doc = build(json.loads(Path(raw_path).read_text()), Catalog.from_file(Path(protoset)), version)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "openapi.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    (out / "index.html").write_text(render_html(doc))


if __name__ == "__main__":
    main()

"""REST routes from ``google.api.http`` path templates.

Parses the template grammar of ``google/api/http.proto``
(``/v1/{name=shelves/*}/books:verb``, ``*``, ``**``, nested field paths) into
matchers, and orders them so that literal segments win over variables, as
Envoy's transcoder does: ``/api/v1/nodes/pools`` is never taken for
``/api/v1/nodes/{node_id}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from lucid.runtime.contracts import Catalog, HttpRoute, MethodInfo


class TemplateError(ValueError):
    """A path template does not follow the grammar."""


@dataclass(frozen=True)
class Route:
    """One REST route: an HTTP verb, a compiled template, the rpc behind it."""

    verb: str
    template: str
    body: str
    method: MethodInfo
    pattern: re.Pattern[str]
    variables: tuple[tuple[str, str], ...]
    """(regex group, field path) of each variable."""
    rank: tuple[int, ...]
    response_body: str = ""
    """The response field sent as the body (``google.api.http`` ``response_body``)."""

    def match(self, path: str) -> dict[str, str] | None:
        """The field values bound by ``path``, or ``None`` when it does not match."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {field: unquote(found.group(group)) for group, field in self.variables}


_SEGMENT_RANK = {"literal": 0, "var": 1, "*": 1, "**": 2}


def _compile_segments(segments: str, rank: list[int]) -> str:
    parts = []
    for segment in segments.split("/"):
        if segment == "**":
            parts.append(".+")
            rank.append(_SEGMENT_RANK["**"])
        elif segment == "*":
            parts.append("[^/]+")
            rank.append(_SEGMENT_RANK["*"])
        elif segment and not re.search(r"[{}*]", segment):
            parts.append(re.escape(segment))
            rank.append(_SEGMENT_RANK["literal"])
        else:
            raise TemplateError(f"bad segment {segment!r}")
    return "/".join(parts)


def compile_template(
    template: str,
) -> tuple[re.Pattern[str], tuple[tuple[str, str], ...], tuple[int, ...]]:
    """Compiles a template into a regex, its variables and a specificity rank."""
    if not template.startswith("/"):
        raise TemplateError(f"template must start with '/': {template!r}")
    body, verb = template, ""
    last = template.rsplit("/", 1)[-1]
    if ":" in last and "}" not in last.split(":", 1)[1]:
        body, verb = template.rsplit(":", 1)
    if not re.fullmatch(r"(\{[^{}]*\}|[^{}]+)*", body[1:]):
        raise TemplateError(f"unbalanced braces in {template!r}")
    regex = ""
    variables: list[tuple[str, str]] = []
    rank: list[int] = []
    position = 1
    for token in re.finditer(r"\{([^}]*)\}|([^{]+)", body[1:]):
        var, literal = token.groups()
        if literal is not None:
            segments = literal.strip("/")
            lead = "/" if literal.startswith("/") else ""
            trail = "/" if literal.endswith("/") and segments else ""
            regex += lead + (_compile_segments(segments, rank) if segments else "") + trail
            continue
        field, _, sub = var.partition("=")
        if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", field):
            raise TemplateError(f"bad field path {field!r} in {template!r}")
        group = f"v{position}"
        position += 1
        sub_rank: list[int] = []
        inner = _compile_segments(sub, sub_rank) if sub else "[^/]+"
        rank.extend(sub_rank or [_SEGMENT_RANK["var"]])
        regex += f"(?P<{group}>{inner})"
        variables.append((group, field))
    regex = "/" + regex
    if verb:
        regex += ":" + re.escape(verb)
    return re.compile(regex), tuple(variables), tuple(rank)


def build_routes(catalog: Catalog) -> dict[str, list[Route]]:
    """Every route of the catalog by HTTP verb, most specific first."""
    table: dict[str, list[Route]] = {}
    seen: dict[tuple[str, str], str] = {}
    for method in catalog.methods.values():
        for route in method.routes:
            pattern, variables, rank = compile_template(route.template)
            key = (route.verb, pattern.pattern)
            if key in seen:
                raise TemplateError(
                    f"{route.verb} {route.template} is bound twice: {seen[key]} and {method.path}"
                )
            seen[key] = method.path
            table.setdefault(route.verb, []).append(
                Route(
                    route.verb,
                    route.template,
                    route.body,
                    method,
                    pattern,
                    variables,
                    rank,
                    route.response_body,
                )
            )
    for routes in table.values():
        routes.sort(key=lambda r: (r.rank, -len(r.template)))
    return table


def find(
    table: dict[str, list[Route]], verb: str, path: str
) -> tuple[Route, dict[str, str]] | None:
    """The route and bound variables for a request, or ``None``."""
    for route in table.get(verb, ()):
        bound = route.match(path)
        if bound is not None:
            return route, bound
    return None


__all__ = ["HttpRoute", "Route", "TemplateError", "build_routes", "compile_template", "find"]

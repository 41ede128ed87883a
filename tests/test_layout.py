"""Clusters keep the layout of docs/cluster-layout.md (read from the source, not run).

Listed here are the clusters already in it; a cluster joins the list when it is
brought to the layout (or born in it), and from then on it cannot drift out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAID_OUT = (
    "auth",
    "blockchain",
    "gateway",
    "mesh",
    "nodes",
    "payments",
    "rdp",
    "sessions",
    "storage",
)
STATELESS = frozenset({"gateway"})
"""Clusters that own no collection: no schema.py and no store/."""
STORE_ONLY = ("pymongo", "redis", "motor")
"""Libraries only ``store/`` (and the runtime) may touch."""

ROOT = Path(__file__).resolve().parents[1] / "lucid"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


STORE_ATTRIBUTES = frozenset({"store", "repo", "collection", "db", "redis", "cache"})
"""Attributes through which a servicer would reach a store instead of a domain service."""


def _store_access(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in STORE_ATTRIBUTES
    }


def _classes(path: Path) -> list[ast.ClassDef]:
    return [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)]


@pytest.mark.parametrize("cluster", LAID_OUT)
def test_servicers_live_in_servicers_and_only_translate(cluster: str) -> None:
    package = ROOT / cluster
    assert not [p.name for p in package.glob("*servicer*.py")], "servicers belong in servicers/"
    modules = sorted((package / "servicers").glob("[!_]*.py"))
    assert modules, f"{cluster} has no servicers/"
    for module in modules:
        classes = _classes(module)
        assert classes, f"{module} defines no servicer"
        for cls in classes:
            assert cls.name.endswith("Servicer"), f"{module}: {cls.name} is not a *Servicer"
        leaked = {m for m in _imports(module) if m.split(".")[0] in STORE_ONLY}
        assert not leaked, f"{module} imports {leaked}: queries belong in store/"
        reached = _store_access(module)
        assert not reached, f"{module} reaches {reached}: servicers call domain services"


@pytest.mark.parametrize("cluster", LAID_OUT)
def test_app_wires_and_the_package_has_its_parts(cluster: str) -> None:
    package = ROOT / cluster
    app = ast.parse((package / "app.py").read_text())
    builds = [n for n in app.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "build"]
    assert builds, f"lucid/{cluster}/app.py has no async def build(runtime)"
    parts = ("convert.py",) if cluster in STATELESS else ("schema.py", "convert.py", "store")
    for part in parts:
        assert (package / part).exists(), f"lucid/{cluster}/{part} is missing"
    assert ast.get_docstring(ast.parse((package / "app.py").read_text()))


@pytest.mark.parametrize("cluster", LAID_OUT)
def test_every_module_says_what_it_owns(cluster: str) -> None:
    for module in sorted((ROOT / cluster).rglob("*.py")):
        assert ast.get_docstring(ast.parse(module.read_text())), f"{module} has no docstring"

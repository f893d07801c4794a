"""The layout keeps its promises (docs/architecture.md): which part may import
which, the pure parts import nothing of Twisted, no import circle, no module
over 500 lines. Read from the source with ``ast``: every import counts, at
the top of a module or inside a function."""

from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PACKAGE = os.path.join(ROOT, "cheesecoin")

# Which of our parts each part may import (itself always).
ALLOWED: Dict[str, Set[str]] = {
    "core": set(),
    "storage": {"core"},
    "wire": {"core"},
    "util": {"core"},
    "tracker": {"core", "wire", "util"},
    "p2p": {"core", "wire", "util"},
    "mining": {"core", "wire", "util"},
    "web": {"core", "wire", "util"},
    "cli": {"core", "storage", "wire", "util", "mining", "sim", "(root)"},
    "sim": {"core", "wire", "util", "p2p", "mining", "tracker"},
    "member": {"core", "storage", "wire", "util", "p2p", "mining", "web"},
    "testing": {"core", "storage", "wire", "util", "p2p", "tracker", "mining"},
    "(root)": set(),
}
# Modules that must not import Twisted (nor anything that does).
PURE = {
    "core",
    "storage",
    "tracker.registry",
    "wire.codec",
    "wire.limits",
    "util.addresses",
    "util.cores",
    "util.localports",
    "testing.chain",
}
MAX_LINES = 500


def modules() -> Dict[str, str]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for directory, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                dotted = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                found[dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted] = (
                    path
                )
    return found


MODULES = modules()


def _type_checking_only(tree: ast.AST) -> Set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:`` (never run)."""
    out: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imports_of(path: str, at_run_time: bool = False) -> List[str]:
    """Every module this file imports (``from X import name`` counts X.name when that is a module);
    ``at_run_time``: not those imported only for the type checker (``if TYPE_CHECKING:``)."""
    out = []
    tree = ast.parse(open(path, encoding="utf-8").read())
    skip = _type_checking_only(tree) if at_run_time else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                out.append(candidate if candidate in MODULES else node.module)
    return out


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "(root)"


def is_pure(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") or part(module) == p for p in PURE)


def test_the_package_has_its_parts() -> None:
    assert set(ALLOWED) - {"(root)"} <= {part(m) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_part_imports_only_what_it_may(module: str) -> None:
    mine = part(module)
    for imported in imports_of(MODULES[module]):
        if imported.split(".")[0] != "cheesecoin":
            continue
        theirs = part(imported)
        assert theirs == mine or theirs in ALLOWED[mine], (
            f"{module} imports {imported}: {mine} may not import {theirs}"
        )


@pytest.mark.parametrize("module", sorted(m for m in MODULES if is_pure(m)))
def test_the_pure_parts_import_nothing_of_twisted(module: str) -> None:
    for imported in imports_of(MODULES[module]):
        assert imported.split(".")[0] != "twisted", f"{module} imports {imported}"
        if imported in MODULES:
            assert is_pure(imported), f"{module} (pure) imports {imported}, which is not"


def test_no_import_circle() -> None:
    graph = {
        m: [i for i in imports_of(p, at_run_time=True) if i in MODULES and i != m]
        for m, p in MODULES.items()
    }
    done: Set[str] = set()

    def visit(module: str, path: List[str]) -> None:
        if module in path:
            circle = path[path.index(module) :] + [module]
            pytest.fail("an import circle: " + " -> ".join(circle))
        if module in done:
            return
        for imported in graph[module]:
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_500_lines(module: str) -> None:
    with open(MODULES[module], encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    assert lines <= MAX_LINES, f"{module} has {lines} lines"

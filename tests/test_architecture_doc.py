"""docs/architecture.md names what is there: every backticked path exists, every
backticked name is defined (or imported) in the package, and each module a row
of the parts table lists is a module of that row's package, with the names in
its parentheses in that module (or in a file the parentheses name)."""

from __future__ import annotations

import ast
import os
import re
from typing import Dict, List, Optional, Set, Tuple

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PACKAGE = os.path.join(ROOT, "cheesecoin")
DOC = os.path.join(ROOT, "docs", "architecture.md")

NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\*?")
ROW = re.compile(r"^\| `cheesecoin/(\w+)/` \| (.*) \| [^|]* \|$")


def _sources() -> Dict[str, str]:
    """path -> text of every Python module of the package and of the plugins."""
    found = {}
    plugins = os.path.join(ROOT, "twisted", "plugins")
    for folder, _, files in [*os.walk(PACKAGE), *os.walk(plugins)]:
        for name in files:
            if name.endswith((".py", ".pyi")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    found[path] = f.read()
    return found


def _defined(sources: Dict[str, str]) -> Set[str]:
    """Every name the package defines, assigns, imports or names a module by."""
    names: Set[str] = set()
    for path, text in sources.items():
        names.add(os.path.splitext(os.path.basename(path))[0])
        names.add(os.path.basename(os.path.dirname(path)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                module = getattr(node, "module", None) or ""
                names.update(module.split("."))
                for alias in node.names:
                    names.update(alias.name.split("."))
                    names.add(alias.asname or "")
    return names


def _groups(cell: str) -> List[Tuple[str, str]]:
    """(module, the text of its parentheses) for each module a parts row lists."""
    found: List[Tuple[str, str]] = []
    depth, start, module = 0, 0, None
    for m in re.finditer(r"`[^`]+`|[()]", cell):
        token = m.group(0)
        if token == "(":
            depth += 1
            if depth == 1:
                start = m.end()
        elif token == ")":
            depth -= 1
            if depth == 0 and module is not None:
                found.append((module, cell[start : m.start()]))
                module = None
        elif depth == 0:
            module = token.strip("`")
            found.append((module, ""))
    return found


class ArchitectureDocTests(SynchronousTestCase):
    def setUp(self) -> None:
        with open(DOC, encoding="utf-8") as f:
            self.lines = f.read().splitlines()
        self.sources = _sources()
        self.text = "\n".join(self.sources.values())
        self.defined = _defined(self.sources)

    def miss(self, token: str, package: Optional[str]) -> Optional[str]:
        """Why ``token`` names nothing there, or None."""
        if "/" in token and re.fullmatch(r"[\w./-]+", token) and not token.startswith("/"):
            bases = [ROOT, PACKAGE] + ([os.path.join(PACKAGE, package)] if package else [])
            if any(os.path.exists(os.path.join(base, token)) for base in bases):
                return None
            return "no such path"
        name = re.sub(r"\(.*\)$", "", token)  # makeService(config, ...), GET_CHEESE(S)
        if NAME.fullmatch(name) and not name.isupper() and not name.endswith(".json"):
            for part in name.rstrip("*").split("."):
                if name.endswith("*") and part == name.rstrip("*").split(".")[-1]:
                    if not re.search(r"def " + re.escape(part), self.text):
                        return f"no function starts with {part}"
                elif part not in self.defined and f'"{part}"' not in self.text:
                    return f"{part} is defined nowhere"
            return None
        return None if name in self.text else "not in the source"

    def test_every_backticked_name_and_path_is_there(self) -> None:
        misses = []
        for number, line in enumerate(self.lines, 1):
            row = ROW.match(line)
            for token in re.findall(r"`([^`\n]+)`", line):
                why = self.miss(token.strip(), row.group(1) if row else None)
                if why:
                    misses.append(f"line {number}: `{token}`: {why}")
        self.assertEqual(misses, [])

    def test_each_row_lists_its_modules_and_their_names(self) -> None:
        misses = []
        rows = [(n, ROW.match(line)) for n, line in enumerate(self.lines, 1)]
        rows = [(n, row) for n, row in rows if row]
        self.assertGreaterEqual(len(rows), 10)
        for number, row in rows:
            package, cell = row.groups()
            for module, inside in _groups(cell):
                base = module.rstrip("/")
                if base == "cheesecoin" or not re.fullmatch(r"\w+", base):
                    continue  # a command: "the `cheesecoin` command", "`cheesecoin simulate`"
                path = os.path.join(PACKAGE, package, base)
                if os.path.isdir(path):
                    continue
                if not os.path.exists(path + ".py"):
                    misses.append(f"line {number}: {module} is not a module of {package}")
                    continue
                # the module, and any file its parentheses name ("a `CheeseStore` of ...")
                texts = [self.sources[path + ".py"]]
                for other in re.findall(r"`(\w+/\w+\.py)`", inside):
                    texts.append(self.sources.get(os.path.join(PACKAGE, other), ""))
                for name in re.findall(r"`([A-Za-z_]\w*)(?:\.\w+)?`", inside):
                    if not any(re.search(r"\b" + name + r"\b", t) for t in texts):
                        misses.append(f"line {number}: {name} is not in {package}/{base}.py")
        self.assertEqual(misses, [])

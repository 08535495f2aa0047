"""Reads memory/graph/neo4j/cypher.py and, statically, which statements the rest of the Neo4j backend
(memory/graph/neo4j/*.py) sends with which parameters — so the checks need neither a server nor a stand-in for one.

A call site is any call with a statement argument: ``cypher.NAME``, ``cypher.MERGE_EDGES[...]`` (every statement in
that table), or a loop variable over ``cypher.SCHEMA`` / a tuple of ``cypher.NAME``. The argument after it holds the
parameters: ``scoped(scope, key=…)`` (the scope's ``tenant`` and ``user`` plus the keywords), a dict literal, a
local name assigned one of those exactly once in the function, or nothing. ``read_memories`` adds the scope itself.
Anything else is reported, so the store keeps its parameters visible.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from memory.graph.neo4j import cypher

ROOT = Path(__file__).resolve().parents[2]
BACKEND = ROOT / "memory" / "graph" / "neo4j"
STORE_FILES = tuple(sorted(path for path in BACKEND.glob("*.py") if path.name != "cypher.py"))
"""The backend's modules but its statements: the store class and the transaction functions it is built from."""
SCOPE_PARAMETERS = frozenset({"tenant", "user"})
_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def statements() -> dict[str, str]:
    """Every statement constant of memory/graph/neo4j/cypher.py: public, upper-case, a string."""
    return {
        name: value
        for name, value in vars(cypher).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }


def parameters_used(statement: str) -> set[str]:
    return set(_PARAMETER.findall(statement))


@dataclass(frozen=True)
class CallSite:
    statement: str
    """The constant's name in memory/graph/neo4j/cypher.py."""
    parameters: frozenset[str] | None
    """The names passed; None where they could not be read (reported as a problem)."""
    line: str
    """``file:line``, the file relative to the repository."""


def store_call_sites(source: str | None = None) -> tuple[list[CallSite], list[str]]:
    """(call sites, problems) found in the backend's modules (or in ``source``)."""
    if source is not None:
        sources = {"<source>": source}
    else:
        sources = {str(f.relative_to(ROOT)): f.read_text("utf-8") for f in STORE_FILES}
    sites: list[CallSite] = []
    problems: list[str] = []
    for name, text in sources.items():
        finder = _CallSiteFinder(statements(), name)
        finder.visit(ast.parse(text))
        sites += finder.sites
        problems += finder.problems
    return sites, problems


class _CallSiteFinder(ast.NodeVisitor):
    def __init__(self, known: dict[str, str], file: str) -> None:
        self.known = known
        self.file = file
        self.by_value = {value: name for name, value in known.items()}
        self.loop_names: dict[str, list[str]] = {}
        self.assigned: dict[str, list[ast.expr]] = {}
        self.sites: list[CallSite] = []
        self.problems: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.assigned = self.assigned, {}
        for child in ast.walk(node):
            if isinstance(child, ast.Assign) and len(child.targets) == 1 and isinstance(child.targets[0], ast.Name):
                self.assigned.setdefault(child.targets[0].id, []).append(child.value)
        self.generic_visit(node)
        self.assigned = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_For(self, node: ast.For) -> None:
        bound = self._statements_in(node.iter, iterable=True)
        if bound and isinstance(node.target, ast.Name):
            self.loop_names[node.target.id] = bound
            self.generic_visit(node)
            del self.loop_names[node.target.id]
        else:
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        for index, argument in enumerate(node.args):
            names = self._statements_in(argument)
            if not names:
                continue
            following = node.args[index + 1] if index + 1 < len(node.args) else None
            line = f"{self.file}:{node.lineno}"
            passed = self._parameters(following, line=line)
            if passed is not None and any(_is_name(a, "read_memories") for a in [node.func, *node.args]):
                passed |= SCOPE_PARAMETERS
            self.sites += [CallSite(name, passed, line) for name in names]
            break
        self.generic_visit(node)

    def _statements_in(self, node: ast.expr, *, iterable: bool = False) -> list[str]:
        """Names of the statements an expression stands for (empty if it is not one)."""
        if _is_cypher_attribute(node):
            value = getattr(cypher, node.attr, None)  # type: ignore[union-attr]
            if isinstance(value, str) and node.attr in self.known:  # type: ignore[union-attr]
                return [node.attr]  # type: ignore[union-attr]
            if iterable and isinstance(value, tuple):
                return [self.by_value[v] for v in value if v in self.by_value]
            return []
        if isinstance(node, ast.Subscript) and _is_cypher_attribute(node.value):
            table = getattr(cypher, node.value.attr, None)  # type: ignore[union-attr]
            if isinstance(table, dict):
                return [self.by_value[v] for v in table.values() if v in self.by_value]
        if iterable and isinstance(node, ast.Tuple):
            found = [self._statements_in(element) for element in node.elts]
            return [name for names in found for name in names] if all(found) else []
        if isinstance(node, ast.Name) and node.id in self.loop_names:
            return self.loop_names[node.id]
        return []

    def _parameters(self, node: ast.expr | None, *, line: str) -> frozenset[str] | None:
        if node is None:
            return frozenset()
        if isinstance(node, ast.Name) and len(self.assigned.get(node.id, ())) == 1:
            node = self.assigned[node.id][0]
        if isinstance(node, ast.Call) and _is_name(node.func, "scoped"):
            if any(k.arg is None for k in node.keywords):
                self.problems.append(f"{line}: scoped(**…) hides parameter names")
                return None
            return SCOPE_PARAMETERS | {k.arg for k in node.keywords if k.arg is not None}
        if isinstance(node, ast.Dict) and all(
            isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys
        ):
            return frozenset(k.value for k in node.keys)  # type: ignore[union-attr]
        self.problems.append(f"{line}: parameters must be scoped(scope, name=…) or a dict literal")
        return None


def _is_cypher_attribute(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and _is_name(node.value, "cypher")


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name

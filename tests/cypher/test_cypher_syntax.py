"""Every Cypher statement of memory/graph/neo4j/cypher.py, checked by Neo4j's own parser (no server needed).

validate.mjs runs ``lintCypherQuery`` from the pinned ``@neo4j-cypher/language-support`` for each Cypher version it
knows, with the graph's vocabulary (a misspelt label, type or key is reported) and, per call site in the store, the
parameters the store passes (a ``$name`` it does not pass is reported). Alongside go statements with known mistakes,
so the check cannot pass by finding nothing. Node modules come from the committed lock file (``npm ci``) when missing
or older than it. Linting is slow (a few hundred ms a statement), so one run serves the tests that inspect it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memory.graph.neo4j import cypher
from tests.cypher.store_calls import statements, store_call_sites

HERE = Path(__file__).resolve().parent
INSTALLED = HERE / "node_modules" / ".package-lock.json"
VOCABULARY = {
    "labels": list(cypher.LABELS),
    "relationshipTypes": list(cypher.RELATIONSHIP_TYPES),
    "propertyKeys": [*cypher.PROPERTY_KEYS, *cypher.ROW_KEYS],
}
BROKEN = {
    "syntax": "MATCH (n RETURN n",
    "undefined_variable": "MATCH (n:Memory) RETURN m",
    "misspelt_label": "MATCH (n:Memroy) RETURN n.id",
    "misspelt_type": "MATCH (:Memory)-[r:RELATED]->(:Memory) RETURN r.strength",
    "misspelt_key": "MATCH (n:Memory) RETURN n.texxt",
    "parameter_not_passed": "MATCH (n:Memory {id: $id}) RETURN n.text",
    "deprecated": "MATCH (n:Memory) RETURN id(n)",
    "merge_without_type": "MATCH (a:Memory), (b:Memory) MERGE (a)-[r]->(b) RETURN r",
}
PARAMETER = "MATCH (n:Memory {id: $id}) RETURN n.text"

Validate = Callable[[object], tuple[int, list[dict[str, Any]], str]]


@pytest.fixture(scope="module")
def validate() -> Validate:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed to check the Cypher statements (apt-get install nodejs npm)")
    lock = HERE / "package-lock.json"
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, capture_output=True, timeout=300)

    def run(payload: object) -> tuple[int, list[dict[str, Any]], str]:
        done = subprocess.run(
            [node, str(HERE / "validate.mjs")],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=HERE,
        )
        problems = json.loads(done.stdout) if done.stdout.strip() else []
        return done.returncode, problems, done.stderr

    return run


def _store_items() -> list[dict[str, Any]]:
    """Each statement once per distinct set of parameters the store passes it; unsent ones without parameters."""
    sites, problems = store_call_sites()
    assert not problems, problems
    texts = statements()
    items: dict[tuple[str, frozenset[str] | None], dict[str, Any]] = {}
    for site in sites:
        items.setdefault(
            (site.statement, site.parameters),
            {
                "name": f"{site.statement} ({site.line})",
                "statement": texts[site.statement],
                "parameters": sorted(site.parameters or ()),
            },
        )
    called = {site.statement for site in sites}
    items.update(
        {(name, None): {"name": name, "statement": text} for name, text in texts.items() if name not in called}
    )
    return list(items.values())


@pytest.fixture(scope="module")
def report(validate: Validate) -> tuple[int, dict[str, list[dict[str, Any]]], list[dict[str, Any]], str]:
    """(exit status, problems by statement name, the store's items, stderr) of one run over everything."""
    store_items = _store_items()
    examples = [{"name": f"example:{name}", "statement": text} for name, text in BROKEN.items()]
    examples[list(BROKEN).index("parameter_not_passed")]["parameters"] = []
    examples += [  # parameters are only checked where the caller lists what it passes
        {"name": "example:parameters_not_listed", "statement": PARAMETER},
        {"name": "example:parameters_listed", "statement": PARAMETER, "parameters": ["id"]},
    ]
    returncode, problems, stderr = validate({"statements": store_items + examples, **VOCABULARY})
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for problem in problems:
        by_name[problem["name"]].append(problem)
    return returncode, by_name, store_items, stderr


def test_every_statement_is_valid_cypher_with_the_parameters_the_store_passes(report: Any) -> None:
    _, problems, store_items, stderr = report
    mine = {name: found for name, found in problems.items() if not name.startswith("example:")}
    assert not mine, "\n".join(line for line in stderr.splitlines() if not line.startswith("example:"))
    assert {item["statement"] for item in store_items} == set(statements().values())


def test_the_validator_rejects_what_neo4j_would_reject(report: Any) -> None:
    """The check above cannot pass vacuously: each kind of mistake it relies on is reported, and fails the run."""
    returncode, problems, _, _ = report
    assert returncode == 1
    assert {name for name in problems if name.startswith("example:")} == {f"example:{name}" for name in BROKEN}
    syntax = problems["example:syntax"]
    assert {p["severity"] for p in syntax} == {"error"}
    assert {p["version"] for p in syntax} == {"CYPHER 5", "CYPHER 25"}
    assert (syntax[0]["line"], syntax[0]["column"]) == (1, 10)


def test_a_plain_list_is_accepted(validate: Validate) -> None:
    returncode, found, stderr = validate([{"name": "plain", "statement": "MATCH (n:Memory) RETURN n.id"}])
    assert (returncode, found) == (0, []) and "1 statement(s) checked, 0 problem(s)" in stderr


def test_unusable_input_is_an_error_not_a_pass(validate: Validate) -> None:
    returncode, found, stderr = validate({"statements": [{"name": "no statement"}]})
    assert returncode == 2 and found == [] and "statement" in stderr

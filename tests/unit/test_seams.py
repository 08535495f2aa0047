"""The rules that keep the house in order, checked on the source: memory is reached only through its public API
(``from memory import …``; its benchmarks from the bench commands), the engine's parts are never touched from
outside, settings code needs no type-ignores, and no file outgrows a few hundred lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy", "adapters", "memory")
MAX_LINES = 400
PARTS = re.compile(r"\bengine\.(store|indexes|pipeline|queue|vectors|embedder|extractor|lexical|recaller|scheduler)\b")
ALLOWED_OUTSIDE = {
    "memory": "the public API (memory/__init__.py)",
    "memory.atomic_file": "a file utility the adapters' publishing shares",
    "memory.bench": "benchmark commands mounted by the proxy's CLI",
}


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def memory_imports(path: Path) -> set[str]:
    """Every ``memory…`` module the file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name == "memory" or name.startswith("memory.")}
    return found


@pytest.mark.parametrize("path", python_files("proxy", "adapters"), ids=lambda p: str(p.relative_to(ROOT)))
def test_proxy_and_adapters_use_memory_through_its_public_api(path: Path) -> None:
    outside = {
        module for module in memory_imports(path)
        if not any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_OUTSIDE)
    }  # fmt: skip
    assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}: use `from memory import …`"


def test_nothing_outside_memory_touches_the_engines_parts() -> None:
    """The memory package's own tests may look inside; the proxy, the adapters and their tests may not."""
    files = python_files("proxy", "adapters", "tests")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        if "tests/memory" not in path.as_posix() and path != Path(__file__)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PARTS.search(line)
    ]
    assert offenders == []


def test_the_engines_store_indexes_pipeline_and_queue_are_its_own() -> None:
    """Not even memory's own tests reach for these four: they build the parts themselves where they drive one."""
    files = python_files("proxy", "adapters", "tests")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        if path != Path(__file__)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bengine\.(store|indexes|pipeline|queue)\b", line)
    ]
    assert offenders == []


def test_settings_code_needs_no_type_ignore() -> None:
    settings_code = [ROOT / "proxy" / "settings.py", ROOT / "proxy" / "settings_env.py", ROOT / "memory" / "config.py"]
    settings_code += [ROOT / "adapters" / "config.py", *ROOT.glob("memory/**/config.py")]
    ignored = [str(path.relative_to(ROOT)) for path in settings_code if "type: ignore" in path.read_text()]
    assert ignored == []


def test_no_file_outgrows_a_few_hundred_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for path in python_files(*PACKAGES, "tests")
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}

"""The README's library example (*The memory engine as a library*), run as written: ``from memory import …`` and
every call it makes, on the real parts, in a fresh process in a temp dir."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"\n## The memory engine as a library\n.*?```python\n(?P<code>.*?)\n```", re.DOTALL)


def library_example() -> str:
    found = BLOCK.search(README.read_text())
    assert found, "the README lost its library example"
    return found["code"]


def test_the_readme_library_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(library_example())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(README.parent)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any("My dog is called Pochi" in line for line in lines[:3]), done.stdout  # recall found the dog first
    assert (tmp_path / "memories").is_dir()

"""The README's *Integrations* snippets, run as written against the proxy in front of the real vLLM, so the README
cannot drift from what works.

Each snippet follows a ``<!-- snippet: NAME -->`` marker in that section. The Python ones run in a subprocess of this
venv's interpreter, the JavaScript one with node (the ``openai`` package from ``tests/snippets/js``, installed from its
lock file with ``npm ci`` when missing or older than it), the curl one through bash. The snippets read
``MEMPROXY_URL`` and ``MEMPROXY_API_KEY``; curl's URL and key are replaced in its text. A snippet passes when it exits 0
and printed an answer (and, where it reads them, memproxy's response headers). The Open WebUI block is configuration,
not a snippet: the e2e tier (``tests/e2e``) drives Open WebUI itself.

Slow parts: the first run of the JavaScript snippet on a machine runs ``npm ci`` (seconds, from the npm registry); the
LiteLLM snippet spends ~5 s importing litellm. Each snippet makes two to four chats with ``max_tokens=64``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.bench.processes import ServerProcess, VllmServer
from tests.integration.conftest import API_KEY, proxy_url, start_proxy

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
JS_DIR = ROOT / "tests" / "snippets" / "js"
SNIPPETS = {
    "openai-python": "python",
    "openai-js": "js",
    "langchain": "python",
    "litellm": "python",
    "openai-responses": "python",
    "openai-agents": "python",
    "anthropic": "python",
    "curl": "bash",
}
README_URL, README_KEY = "http://127.0.0.1:8080", "sk-acme-backend"  # what the curl snippet names
MARKER = re.compile(r"<!-- snippet: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.DOTALL)
MEMORY_LINE = re.compile(r"^memory: (ok|off|skipped|degraded)\b", re.MULTILINE)
TIMEOUT_S = 300


def integrations_section() -> str:
    text = README.read_text()
    start = text.index("\n## Integrations\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def readme_snippets() -> dict[str, tuple[str, str]]:
    """name -> (language tag, code) of every marked snippet in the Integrations section."""
    return {m["name"]: (m["lang"], m["code"] + "\n") for m in MARKER.finditer(integrations_section())}


def test_integrations_section_marks_every_snippet() -> None:
    """Runs without vLLM: a snippet renamed, retagged or dropped from the README fails here, not silently below."""
    found = {name: lang for name, (lang, _) in readme_snippets().items()}
    assert found == SNIPPETS


@pytest.fixture(scope="module")
def snippet_proxy(vllm: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`memproxy serve` with memory on and the integration tier's key (trusted: it may name users). Yields /v1."""
    process: ServerProcess = start_proxy(f"{vllm.base_url}/v1", tmp_path_factory.mktemp("snippets") / "proxy.log")
    try:
        yield f"{proxy_url(process)}/v1"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed for the README's JavaScript snippet (apt-get install nodejs npm)")
    installed, lock = JS_DIR / "node_modules" / ".package-lock.json", JS_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, capture_output=True, timeout=300)
    return JS_DIR / "node_modules"


def run_snippet(name: str, base_url: str, tmp_path: Path) -> str:
    """Runs one README snippet as a user would; returns its stdout after asserting it exited 0."""
    lang, code = readme_snippets()[name]
    env = {
        **os.environ,
        "MEMPROXY_URL": base_url,
        "MEMPROXY_API_KEY": API_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # litellm fetches a price list from the internet at import otherwise
        "HF_HUB_OFFLINE": "1",
    }
    if lang == "python":
        script = tmp_path / f"readme_{name.replace('-', '_')}.py"  # not litellm.py: that would shadow the package
        script.write_text(code)
        command, cwd, stdin = [sys.executable, str(script)], tmp_path, None
    elif lang == "js":
        # ES module code on stdin resolves `import "openai"` from the working directory's node_modules.
        command, cwd, stdin = [shutil.which("node") or "node", "--input-type=module"], JS_DIR, code
    else:
        assert README_URL in code and README_KEY in code, "the curl snippet no longer names the URL and key to replace"
        code = code.replace(f"{README_URL}/v1", base_url).replace(README_KEY, API_KEY)
        command, cwd, stdin = ["bash", "-euo", "pipefail", "-c", code], tmp_path, None
    done = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"README snippet {name!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    print(f"--- {name} ---\n{done.stdout}")  # the answers, for -s
    return done.stdout


def answers(stdout: str) -> list[str]:
    """The printed lines that are neither memproxy's header line nor empty: the model's answers."""
    return [line for line in stdout.splitlines() if line.strip() and not MEMORY_LINE.match(line)]


@pytest.mark.vllm
def test_openai_python_snippet(snippet_proxy: str, tmp_path: Path) -> None:
    stdout = run_snippet("openai-python", snippet_proxy, tmp_path)
    assert re.search(r"^memory: (ok|degraded) recalled: \d+$", stdout, re.MULTILINE), stdout
    assert answers(stdout), stdout


@pytest.mark.vllm
def test_openai_js_snippet(snippet_proxy: str, node_modules: Path, tmp_path: Path) -> None:
    stdout = run_snippet("openai-js", snippet_proxy, tmp_path)
    assert re.search(r"^memory: (ok|degraded) recalled: \d+$", stdout, re.MULTILINE), stdout
    assert answers(stdout), stdout


@pytest.mark.vllm
def test_langchain_snippet(snippet_proxy: str, tmp_path: Path) -> None:
    stdout = run_snippet("langchain", snippet_proxy, tmp_path)
    assert re.search(r"^memory: (ok|degraded)$", stdout, re.MULTILINE), stdout
    assert answers(stdout), stdout


@pytest.mark.vllm
def test_litellm_snippet(snippet_proxy: str, tmp_path: Path) -> None:  # slow: importing litellm takes ~5 s
    stdout = run_snippet("litellm", snippet_proxy, tmp_path)
    assert answers(stdout), stdout


@pytest.mark.vllm
@pytest.mark.parametrize("name", ["openai-responses", "openai-agents", "anthropic"])
def test_responses_agents_and_anthropic_snippets(name: str, snippet_proxy: str, tmp_path: Path) -> None:
    stdout = run_snippet(name, snippet_proxy, tmp_path)
    assert len(answers(stdout)) >= 2, stdout  # two answers each (a stream's may be one line)


@pytest.mark.vllm
def test_curl_snippet(snippet_proxy: str, tmp_path: Path) -> None:
    stdout = run_snippet("curl", snippet_proxy, tmp_path)
    assert re.search(r"^HTTP/1\.1 200", stdout, re.MULTILINE), stdout  # -i: the status line and headers
    assert re.search(r"^x-memproxy-memory: (ok|degraded)\r?$", stdout, re.MULTILINE | re.IGNORECASE), stdout
    assert '"choices"' in stdout and '"content"' in stdout, stdout  # the non-streamed answer
    assert "data: {" in stdout and stdout.rstrip().endswith("data: [DONE]"), stdout  # the stream, to its end

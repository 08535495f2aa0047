"""The console entry point and the benchmark command, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from proxy import __version__

MEMPROXY = str(Path(sys.executable).with_name("memproxy"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MEMPROXY, *args], capture_output=True, text=True, timeout=120, check=False)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"memproxy {__version__}"


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "bench" in result.stdout
    serve = run("serve", "--help")
    assert "--upstream-url" in serve.stdout and "MEMPROXY_" in serve.stdout


def test_no_command_prints_help_and_fails() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage" in result.stdout


def test_bench_overhead_reports_json() -> None:
    result = run("bench", "overhead", "--json", "--requests", "10", "--warmup", "2", "--pause-ms", "1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["upstream"] == "stub" and report["pause_ms"] == 1
    assert report["requests_per_path"] == 10
    for scenario in ("nonstream", "stream"):
        for metric in ("ttfb_ms", "total_ms"):
            row = report["scenarios"][scenario][metric]
            assert row["direct"]["p50"] > 0 and row["proxy"]["p50"] > 0
            assert row["proxy"]["p95"] >= row["proxy"]["p50"]
    assert set(report["added_ms"]) == {"p50", "p95"}


def test_bench_latency_reports_json_with_a_partition_read_back() -> None:
    # A RAM budget of 1 MB: the filler user's search pushes the 3000-memory user's partition out, so the reload
    # figures (another user's recalls while it is read back) are measured, not skipped.
    result = run(
        "bench", "latency", "--json", "--total", "4000", "--sizes", "100,3000", "--queries", "5",
        "--vector-ram-mb", "1", "--pool", "64",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["sizes"]) == {"100", "3000"}
    assert report["sizes"]["3000"]["memories"] == 3000
    assert 0 < report["sizes"]["100"]["p50_ms"] <= report["sizes"]["100"]["p95_ms"]
    reload = report["reload"]
    assert reload["others_recalls"] > 0 and reload["cold_recall_ms"] > 0
    assert reload["others_max_ms"] >= reload["others_p50_ms"] > 0
    long = report["long_messages"]
    assert long["query_max_tokens"] == 64 and 0 < long["p50_ms"] <= long["p95_ms"]

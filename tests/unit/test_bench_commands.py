"""The benchmark commands that put memory in the loop, run as a user runs them at tiny sizes: the JSON they print has
its shape, and memory really took part (these are correctness smoke tests, not timing tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MEMPROXY = str(Path(sys.executable).with_name("memproxy"))


def bench(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``memproxy bench …``; ``env`` is added to this environment and reaches the proxy the bench starts. A generous
    recall timeout keeps a busy test machine from sending chats down the degraded path."""
    env = {"HF_HUB_OFFLINE": "1", "MEMPROXY_RECALL_TIMEOUT_MS": "10000", **env}
    return subprocess.run(
        [MEMPROXY, "bench", *args], capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env}
    )


def test_overhead_without_memories_keeps_memory_off_and_out_of_home(tmp_path: Path) -> None:
    result = bench("overhead", "--json", "--requests", "3", "--warmup", "1", HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["memory"] is None
    assert "proxy_memory_off" not in report["scenarios"]["stream"]["ttfb_ms"]
    assert not (tmp_path / ".local" / "share" / "memproxy").exists()  # the run's data dir is its own


def test_overhead_with_memories_recalls_them() -> None:
    result = bench("overhead", "--json", "--memories", "200", "--requests", "5", "--warmup", "1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    memory = report["memory"]
    assert memory["memories"] == 200 and memory["user"] == "bench-user"
    assert memory["statuses"] == {"ok": 15}  # 5 requests × 3 scenarios (chat whole, streamed; Responses streamed)
    assert memory["recalled"]["min"] > 0
    assert memory["proxy_start_s"] > 0 and memory["write_queue_depth_at_end"] >= 0
    for scenario in ("nonstream", "stream", "responses_stream"):
        assert set(memory["ttfb_added_ms"][scenario]) == {"p50", "p95"}
        for metric in ("ttfb_ms", "total_ms"):
            row = report["scenarios"][scenario][metric]
            assert {"direct", "proxy", "added", "proxy_memory_off", "added_memory_off", "memory_part"} <= set(row)


def test_overhead_fails_loudly_when_memory_is_degraded() -> None:
    result = bench(
        "overhead", "--json", "--memories", "50", "--requests", "2", "--warmup", "0",
        MEMPROXY_RECALL_TIMEOUT_MS="0.001",
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["memory"]["statuses"] == {"degraded": 6}
    assert "without recalled memories" in result.stderr


def test_throughput_compares_memory_on_and_off() -> None:
    result = bench(
        "throughput", "--json", "--duration-s", "1", "--concurrency", "4", "--round-s", "0.5", "--warmup-s", "0.2",
        "--users", "5", "--memories-per-user", "40",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    on, off = report["memory_on"], report["memory_off"]
    for row in (on, off):
        assert {"rps", "p50_ms", "p95_ms", "errors"} <= set(row)
        assert row["rps"] > 0 and row["errors"] == 0
    assert report["ratio"] == round(on["rps"] / off["rps"], 3)
    assert set(on["memory_statuses"]) == {"ok"} and on["recalled_mean"] > 0
    assert set(off["memory_statuses"]) == {"off"}
    assert report["write_queue_depth_at_end"] >= 0


def test_chat_recall_replays_a_conversation_and_scores_the_prompts(tmp_path: Path) -> None:
    """Two short sessions replayed as chats through a real proxy (both sides, both modes), then the questions."""
    from tests.unit.test_chat_replay import SAMPLE

    dataset = tmp_path / "sample.json"
    dataset.write_text(json.dumps([SAMPLE]))
    result = bench("chat-recall", "--dataset", str(dataset), "--json", "--data-dir", str(tmp_path / "kept"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"replay", "noisy"}
    for row in report.values():
        assert row["questions"] == 3 and row["exchanges"] == 6
        assert set(row["memory_statuses"]) == {"ok"}
        assert 0 <= row["evidence_in_prompt"] <= 1 and row["injected_tokens_per_chat"] > 0
        assert set(row["by_category"]) == {"1", "4"} and row["echoes"] >= 0
    again = bench(
        "chat-recall", "--dataset", str(dataset), "--json", "--assistant", "replay", "--questions-only",
        "--data-dir", str(tmp_path / "kept"),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["replay"]["questions"] == 3

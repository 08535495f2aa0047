"""``memproxy bench prefix-cache`` end to end on a short replay against the session's real vLLM: the command runs,
prints the documented JSON, and memproxy's layout is served from the cache where the naive one is not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.bench.processes import VllmServer

pytestmark = pytest.mark.vllm

MEMPROXY = str(Path(sys.executable).with_name("memproxy"))


def test_a_short_replay_reports_every_arm(vllm: VllmServer) -> None:
    done = subprocess.run(
        [MEMPROXY, "bench", "prefix-cache", "--json", "--upstream-url", f"{vllm.base_url}/v1", "--turns", "4",
         "--memories", "30", "--system-tokens", "300", "--max-tokens", "8"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert set(report) >= {"memproxy", "memproxy_prefetch_only", "naive", "no_memory", "settings"}
    for arm in ("memproxy", "memproxy_prefetch_only", "naive", "no_memory"):
        assert len(report[arm]["turns"]) == 4 and report[arm]["ttft_ratio"] > 0
    assert report["naive"]["hit_ratio_from_turn3"] < report["memproxy"]["hit_ratio_from_turn3"]
    assert all("prefill_wait_ms" in turn for turn in report["memproxy"]["turns"])

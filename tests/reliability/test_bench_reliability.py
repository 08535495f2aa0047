"""`memproxy bench reliability --quick --json` as a user runs it: every part runs, stops by itself, and meets its
targets (kill -9 after answers loses nothing, the fuzz finds no 5xx and no change on a rejected request, 64
streaming clients get no error, no injected fault loses a memory, every abusive request is a clean 4xx or inert)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from proxy.settings import child_environment


def test_the_quick_reliability_bench_meets_its_targets(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "bench", "reliability", "--quick", "--json"],
        capture_output=True, text=True, timeout=900, env=child_environment(TMPDIR=str(tmp_path)),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    crash, fuzz, load, faults = report["crash"], report["fuzz"], report["load"], report["faults"]
    assert crash["answered"] > 0 and crash["remembered"] == crash["answered"] and crash["duplicated"] == 0
    assert fuzz["operations"] >= 21 and fuzz["requests"] > 200
    assert fuzz["server_errors"] == 0 and fuzz["state_changed_on_reject"] == 0
    assert load["clients"] == 64 and load["answered"] > 0 and load["errors"] == 0
    assert load["ttfb_ms"]["p50"] > 0 and 0 < load["rss_mb"]["end"] <= load["rss_mb"]["bound"]
    assert set(faults) >= {"upstream_dies_mid_stream", "upstream_refuses", "upstream_too_slow", "index_deleted",
                           "index_corrupted", "store_locked", "store_raises", "store_read_only", "disk_full"}  # fmt: skip
    assert all(fault["lost"] == 0 for fault in faults.values())
    assert faults["upstream_refuses"]["chat"] == "error" and faults["index_deleted"]["chat"] == "answered"
    for name in ("store_locked", "store_raises", "store_read_only"):
        assert faults[name]["chat"] == "answered" and faults[name]["writes_waiting_during_fault"] >= 1, faults[name]
    assert faults["store_raises"]["store_errors"] >= 1 and faults["store_read_only"]["store_errors"] >= 1
    for op in ("import", "delete_user", "index_save", "adapter_publish"):
        assert faults[f"killed_during_{op}"]["runs"] >= 2 and faults[f"killed_during_{op}"]["broken"] == 0
    clock = faults["clock_backwards"]
    assert clock.get("skipped") or (clock["chat"] == "answered" and clock["landed_after_restart_s"] < 60), clock
    if os.geteuid() == 0:  # mounting the small tmpfs needs root; elsewhere the fault reports itself skipped
        assert faults["disk_full"]["chat"] == "answered" and faults["disk_full"]["writes_waiting_during_fault"] >= 1
    abuse = report["abuse"]
    assert abuse["oversized_body"]["status"] == abuse["oversized_body_streamed"]["status"] == 413
    assert abuse["deeply_nested_json"]["status"] == abuse["invalid_utf8"]["status"] == 400
    assert all(case["clean"] for case in abuse.values()), abuse

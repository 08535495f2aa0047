"""``memproxy bench reliability``: what memproxy promises, tried, each part bounded in time and count, on loopback
only, stopping by itself.

- ``crash`` (:mod:`.crash`): kill -9 of a real proxy just after answers; answered exchanges remembered, none twice;
- ``fuzz`` (:mod:`.fuzz`): every route from the OpenAPI document, valid and hostile keys; no 5xx, nothing changed
  by a rejected request, and the share of schema-valid requests accepted;
- ``load`` (:mod:`.load`): 64 concurrent streaming clients against the stub upstream, 100 users with memories;
- ``faults`` (:mod:`.faults`, :mod:`.store_faults`): the upstream dying, refusing or too slow; the vector index
  deleted or corrupted; the store write-locked by another process, failing, read-only; the data dir's disk full;
  kill -9 inside a memory import, a delete-user, an index save, an adapter publish (:mod:`.crash_ops`);
- ``abuse`` (:mod:`.abuse`): oversized and deeply nested bodies, invalid UTF-8, path separators in ids, a memory
  that tries to close the recalled-memory block.

``--quick`` runs a short version of each (for CI); ``--json`` prints one object."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

PARTS = ("crash", "fuzz", "load", "faults", "abuse")
QUICK = {"seeds": 2, "per_operation": 8, "clients": 64, "duration_s": 10.0, "users": 20, "memories_per_user": 50}
FULL = {"seeds": 6, "per_operation": 50, "clients": 64, "duration_s": 180.0, "users": 100, "memories_per_user": 1000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a short version of each part (CI)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"memproxy bench reliability: unknown part(s) {', '.join(unknown)}; choose from {PARTS}")
    report: dict[str, Any] = {"quick": bool(args.quick)}
    with tempfile.TemporaryDirectory(prefix="memproxy-reliability-") as tmp:
        work = Path(tmp)
        for part in parts:
            began = time.perf_counter()
            report[part] = RUNNERS[part](work, plan)
            report.setdefault("seconds", {})[part] = round(time.perf_counter() - began, 1)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if passed(report) else 1


def _crash(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    from proxy.bench.reliability.crash import CrashReport, run_once
    from proxy.bench.stack import start_stub, stub_url

    total = CrashReport()
    stub = start_stub()
    try:
        for seed in range(1, plan["seeds"] + 1):
            total.add(run_once(seed, stub_url(stub), work))
    finally:
        stub.stop()
    return total.as_dict() | {"lost": total.lost}


def _fuzz(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    from proxy.bench.reliability import fuzz

    return fuzz.run(per_operation=plan["per_operation"])


def _load(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    from proxy.bench.reliability import load
    from proxy.bench.stack import start_stub, stub_url

    stub = start_stub()
    try:
        return load.run(
            stub_url(stub), work, clients=plan["clients"], duration_s=plan["duration_s"], users=plan["users"],
            memories_per_user=plan["memories_per_user"],
        )  # fmt: skip
    finally:
        stub.stop()


def _faults(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    from proxy.bench.reliability import faults

    return faults.run(seeds=plan["seeds"])


def _abuse(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    from proxy.bench.reliability import abuse

    return abuse.run()


RUNNERS = {"crash": _crash, "fuzz": _fuzz, "load": _load, "faults": _faults, "abuse": _abuse}


def passed(report: dict[str, Any]) -> bool:
    """Every target met: nothing lost or doubled, no 5xx, no change on reject, no load error, no fault loss."""
    checks = []
    if "crash" in report:
        crash = report["crash"]
        checks.append(crash["remembered"] == crash["answered"] and crash["duplicated"] == 0)
    if "fuzz" in report:
        checks.append(report["fuzz"]["server_errors"] == 0 and report["fuzz"]["state_changed_on_reject"] == 0)
    if "load" in report:
        rss = report["load"]["rss_mb"]
        checks.append(report["load"]["errors"] == 0 and rss["end"] <= rss["bound"])
    if "faults" in report:
        checks.append(all(fault["lost"] == 0 for fault in report["faults"].values()))
    if "abuse" in report:
        checks.append(all(case["clean"] for case in report["abuse"].values()))
    return all(checks)


def format_report(report: dict[str, Any]) -> str:
    lines = [f"memproxy bench reliability{' (quick)' if report['quick'] else ''}"]
    if "crash" in report:
        c = report["crash"]
        lines.append(f"crash   kill -9 after answers: {c['answered']} answered, {c['remembered']} remembered, "
                     f"{c['duplicated']} duplicated ({c['sent']} sent)")  # fmt: skip
    if "fuzz" in report:
        f = report["fuzz"]
        lines.append(f"fuzz    {f['requests']} requests over {f['operations']} operations: {f['server_errors']} "
                     f"responses >= 500, {f['state_changed_on_reject']} rejected requests that changed state; "
                     f"schema-valid requests ({f['schema_valid_requests']}) accepted {f['schema_valid_accepted']}, "
                     f"refused as malformed {f['schema_valid_refused_400']}")  # fmt: skip
    if "load" in report:
        lo = report["load"]
        lines.append(f"load    {lo['clients']} streaming clients x {lo['duration_s']:.0f} s, {lo['users']} users x "
                     f"{lo['memories_per_user']} memories: {lo['answered']} answered, {lo['errors']} errors, ttfb "
                     f"p50/p95 {lo['ttfb_ms']['p50']}/{lo['ttfb_ms']['p95']} ms, RSS {lo['rss_mb']['start']} -> "
                     f"{lo['rss_mb']['end']} MB (bound {lo['rss_mb']['bound']}), queue {lo['queue_depth_at_end']} at the "
                     f"end, drained in {lo['drain_s']} s")  # fmt: skip
    if "faults" in report:
        for name, fault in report["faults"].items():
            killed = f" ({fault['runs']} runs, {fault['killed_inside']} killed inside)" if "runs" in fault else ""
            lines.append(f"fault   {name:<32} chat {fault['chat']:<9} lost {fault['lost']}{killed}")
    if "abuse" in report:
        for name, case in report["abuse"].items():
            lines.append(f"abuse   {name:<26} status {case['status']:<4} {'clean' if case['clean'] else 'NOT CLEAN'}")
    lines.append("all targets met" if passed(report) else "TARGETS MISSED")
    return "\n".join(lines)

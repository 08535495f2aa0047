"""kill -9 in the middle of the proxy's long operations: a memory import, a delete-user, an index save, an adapter
publish. A child process runs the operation on a data dir prepared by the parent (the same engine and adapter calls
the routes make) and is killed at a random instant inside it; the parent then opens the data dir again, as a
restarted proxy would, retries what a client never got an answer for, and counts what is broken:

- ``import``: an imported memory present twice, or present but not recallable (a vector missing), or an import that
  a retry does not complete; the user's earlier memories must stay;
- ``delete_user``: anything of the user recallable or exported after a delete that answered, or after a retried one;
  another user's memories must stay;
- ``index_save``: a memory of any user that recall no longer finds after the restart (the index is rebuilt from the
  store where a partition file is missing or torn);
- ``adapter_publish``: a ``ready`` version whose folder is missing or incomplete, two ``ready`` versions of one
  user, or a temp folder left once the proxy has started. Training is replaced by writing an adapter's two files (it
  takes minutes on CPU); moving them into place and flipping the registry are the real code.

Run ``python -m proxy.bench.reliability.crash_ops <op> <data_dir>`` to be the child."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from memory import MemoryConfig, MemoryEngine, Scope
from proxy.settings import child_environment

OPS = ("import", "delete_user", "index_save", "adapter_publish")
USERS = 8
IMPORTED = 120
KEEPER = "keeper"
"""A user none of the operations touches: their memories must all survive."""
ADAPTER_BYTES = 8 * 2**20


def fact(user: str, n: int) -> str:
    return f"Note {n} of {user}: the locker code for shelf {n} is {user}-{n * 7919 % 10007}."


def run(work: Path, seeds: int) -> dict[str, dict[str, int]]:
    """Each operation ``seeds`` times, killed at a seeded random instant: runs, kills that landed inside the
    operation, and what was broken after the restart."""
    report: dict[str, dict[str, int]] = {}
    for op in OPS:
        totals = {"runs": 0, "killed_inside": 0, "broken": 0}
        for seed in range(1, seeds + 1):
            data_dir = work / f"{op}-{seed}"
            asyncio.run(_prepare(op, data_dir))
            killed_inside = _run_child(op, data_dir, random.Random(f"{op}/{seed}"))
            broken = asyncio.run(_check(op, data_dir, answered=not killed_inside))
            totals["runs"] += 1
            totals["killed_inside"] += killed_inside
            totals["broken"] += broken
        report[op] = totals
    return report


# --- the parent ------------------------------------------------------------------------------------------------


async def _prepare(op: str, data_dir: Path) -> None:
    engine = await MemoryEngine.open(MemoryConfig(data_dir=data_dir / "mem"))
    try:
        users = [KEEPER, "target"] + ([f"user{i}" for i in range(USERS)] if op == "index_save" else [])
        for user in users:
            for n in range(12):
                await engine.remember(fact(user, n), user)
        if op in ("import", "delete_user"):  # a real export of another user's memories, as a client sends it
            for n in range(IMPORTED):
                await engine.remember(fact("imported", n), "source")
            (data_dir / "import.json").write_text(json.dumps(await engine.export("source")))
            await engine.forget_user("source")
        if op == "delete_user":  # more to delete, so that the delete takes long enough to be killed inside
            await engine.import_user("target", json.loads((data_dir / "import.json").read_text()))
    finally:
        await engine.close()


def _run_child(op: str, data_dir: Path, draw: random.Random) -> bool:
    """Start the child, wait until it says the operation begins, kill -9 it a random instant later (within the
    operation's expected span). True when the kill landed before the child said the operation ended."""
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.bench.reliability.crash_ops", op, str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_environment(),
    )  # fmt: skip
    assert child.stdout is not None
    try:
        line = child.stdout.readline().strip()
        if line == "begin":
            time.sleep(draw.uniform(0.0, SPAN_S[op]))
            os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        rest, errors = child.communicate(timeout=60)
    if line != "begin" or (child.returncode != -signal.SIGKILL and "end" not in rest.split()):
        raise RuntimeError(f"crash_ops child for {op} failed: {errors[-2000:]}")
    return "end" not in rest.split()


SPAN_S = {"import": 0.8, "delete_user": 0.02, "index_save": 0.035, "adapter_publish": 0.3}
"""About how long each operation takes on the 2-core development machine (0.6 s, 13 ms, 27 ms, 0.2 s): the
kill falls inside it, or a little after."""


async def _check(op: str, data_dir: Path, *, answered: bool) -> int:
    engine = await MemoryEngine.open(MemoryConfig(data_dir=data_dir / "mem"))
    try:
        broken = await _lost_of(engine, KEEPER)
        if op == "import":
            broken += await _import_broken(engine, data_dir, answered)
        elif op == "delete_user":
            broken += await _delete_broken(engine, answered)
        elif op == "index_save":
            for user in ["target"] + [f"user{i}" for i in range(USERS)]:
                broken += await _lost_of(engine, user)
        else:
            broken += await _adapters_broken(data_dir)
    finally:
        await engine.close()
    return broken


async def _lost_of(engine: MemoryEngine, user: str) -> int:
    """The user's facts missing from the export, or not found by recall for their own words."""
    texts = {m["text"] for m in (await engine.export(user))["memories"]}
    missing = 0
    for n in range(12):
        text = fact(user, n)
        hits = await engine.recall(f"What is the locker code for shelf {n} of {user}?", user, top_k=5)
        missing += text not in texts or not any(hit.memory.text == text for hit in hits)
    return missing


async def _import_broken(engine: MemoryEngine, data_dir: Path, answered: bool) -> int:
    body = json.loads((data_dir / "import.json").read_text())
    broken = await _imported_wrong(engine, complete=answered)
    if not answered:  # the client got no answer: it sends the import again, which must complete it
        await engine.import_user("target", body)
        broken += await _imported_wrong(engine, complete=True)
    return broken


async def _imported_wrong(engine: MemoryEngine, *, complete: bool) -> int:
    texts = [m["text"] for m in (await engine.export("target"))["memories"]]
    wanted = [fact("imported", n) for n in range(IMPORTED)]
    present = [text for text in wanted if text in texts]
    wrong = sum(texts.count(text) > 1 for text in wanted) + (complete and len(present) < IMPORTED)
    for text in present[:: max(len(present) // 12, 1)]:  # a sample: recall finds what is there
        hits = await engine.recall(text, "target", top_k=3)
        wrong += not any(hit.memory.text == text for hit in hits)
    return wrong


async def _delete_broken(engine: MemoryEngine, answered: bool) -> int:
    if not answered:
        await engine.forget_user("target")
    left = len((await engine.export("target"))["memories"])
    hits = await engine.recall("What is the locker code for shelf 3 of target?", "target", top_k=5)
    return left + len(hits)


async def _adapters_broken(data_dir: Path) -> int:
    from adapters.erasure import sweep_orphans
    from adapters.jobs import recover_interrupted
    from adapters.registry import AdapterRegistry, AdapterStatus

    adapters_dir = data_dir / "adapters"
    registry = AdapterRegistry(adapters_dir / "registry.sqlite3")
    await recover_interrupted(registry, adapters_dir)  # what the proxy does at start
    await sweep_orphans(adapters_dir, registry)
    versions = await registry.list_current()
    ready = [v for v in versions if v.status == AdapterStatus.READY]
    broken = max(len(ready) - 1, 0)
    for version in ready:
        files = {p.name: p.stat().st_size for p in version.path.glob("*")} if version.path.is_dir() else {}
        broken += files != {"adapter_config.json": 2, "adapter_model.safetensors": ADAPTER_BYTES}
    broken += sum(1 for path in adapters_dir.glob(".*.tmp") if path.is_dir())
    broken += sum(version.status == AdapterStatus.TRAINING for version in versions)  # a row training forever
    return broken


# --- the child -------------------------------------------------------------------------------------------------


async def _child(op: str, data_dir: Path) -> None:
    engine = await MemoryEngine.open(MemoryConfig(data_dir=data_dir / "mem"))
    if op == "index_save":  # one more memory each, so every partition has a change to save
        for user in ["target"] + [f"user{i}" for i in range(USERS)]:
            await engine.remember(f"{user} parks in bay {len(user) * 13}.", user)
        print("begin", flush=True)
        await engine.close()
        print("end", flush=True)
        return
    print("begin", flush=True)
    if op == "import":
        await engine.import_user("target", json.loads((data_dir / "import.json").read_text()))
    elif op == "delete_user":
        await engine.forget_user("target")
    else:
        await _publish_adapters(engine, data_dir)
    print("end", flush=True)
    await engine.close()


async def _publish_adapters(engine: MemoryEngine, data_dir: Path) -> None:
    from adapters import jobs
    from adapters.config import AdaptersConfig
    from adapters.registry import AdapterRegistry
    from adapters.trainer import TrainingReport

    def train(base: Path, data: Any, out_dir: Path, config: Any, progress: Any = None) -> TrainingReport:
        out_dir.mkdir(parents=True)
        (out_dir / "adapter_config.json").write_text("{}")
        (out_dir / "adapter_model.safetensors").write_bytes(os.urandom(ADAPTER_BYTES))
        return TrainingReport(10.0, 5.0, 10.0, 10.0, 8, 2, 1, 0.1, 0.5)

    jobs.train_lora = train  # the real trainer needs minutes of CPU; everything after it is the real code
    config = AdaptersConfig(adapters_dir=data_dir / "adapters", base_model_path=data_dir, base_model="base")
    registry = AdapterRegistry(config.registry_path)
    for _ in range(3):  # three versions in a row: the kill lands in one of them
        await jobs.train_and_publish(config, registry, engine, Scope(engine.config.tenant, "target"))


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], Path(sys.argv[2])))

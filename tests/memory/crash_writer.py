"""Child process for the crash test: queue N memories durably, then apply them until killed (kill -9)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from memory.config import MemoryConfig
from memory.engine import MemoryEngine


async def main(data_dir: Path, count: int) -> None:
    engine = await MemoryEngine.open(MemoryConfig(data_dir=data_dir, dedupe_threshold=1.0, index_save_interval_s=0.2))
    for i in range(count):
        await engine.remember(
            f"Note {i}: the crash test wrote item number {i} with colour c{i % 13}",
            user_id="crash-user",
            source_ids=(f"msg-{i}",),
            job_id=f"job-{i}",
            wait=False,
        )
    print("queued", flush=True)
    await engine.flush(timeout_s=600)
    print("drained", flush=True)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))

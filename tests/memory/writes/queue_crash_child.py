"""Child process of the queue crash test: put ``count`` jobs (in concurrent groups, so they share commits), ack a
random subset and claim some as it goes, printing ``put <id>`` / ``ack <id>`` only once each is durable, and
``acking <id>`` before an ack starts (a kill between the ack's commit and its ``ack`` line leaves a job that is gone
although no ``ack`` was printed). The test kills it with SIGKILL part-way.

    python -m tests.memory.writes.queue_crash_child PATH COUNT SEED
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from memory.models import Scope
from memory.writes.jobs import WriteJob
from memory.writes.queue import DurableQueue


async def main(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    queue = DurableQueue(path)
    scope = Scope("crash", "user")
    unacked: list[str] = []

    async def put(i: int) -> None:
        job = WriteJob.for_memory(scope, f"crash test note {i}", job_id=f"job-{i:04d}", source_ids=[f"m{i}"])
        await queue.put(job)
        print(f"put {job.job_id}", flush=True)
        unacked.append(job.job_id)

    done = 0
    while done < count:
        group = min(rng.randint(1, 16), count - done)
        await asyncio.gather(*(put(i) for i in range(done, done + group)))
        done += group
        for _ in range(rng.randint(0, 3)):
            if unacked and rng.random() < 0.6:
                job_id = unacked.pop(rng.randrange(len(unacked)))
                print(f"acking {job_id}", flush=True)
                if await queue.ack(job_id):
                    print(f"ack {job_id}", flush=True)
        if rng.random() < 0.2:
            await queue.claim(limit=rng.randint(1, 8), lease_s=30.0)  # a worker holding leases when the kill lands
        await asyncio.sleep(rng.random() * 0.002)
    print("done", flush=True)
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))

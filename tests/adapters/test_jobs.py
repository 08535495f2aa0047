"""Publishing: folder into place, then the registry flip; a weak or crashed run publishes nothing.

The trainer itself is replaced here by a stub that writes the two files ``save_pretrained`` writes and returns a
chosen report: a real run takes a minute or more on this CPU. The real training, validation and publish run in
tests/integration/test_adapters.py (and ``memproxy bench adapters``)."""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path

import pytest

from adapters import jobs as jobs_module
from adapters.config import AdaptersConfig
from adapters.jobs import AdapterJobs, NothingToTrain, recover_interrupted, train_and_publish
from adapters.registry import AdapterRegistry, AdapterStatus
from adapters.trainer import TrainingReport
from memory import MemoryEngine, Scope
from tests.adapters.conftest import with_facts

ALICE = Scope("t", "alice")


def report(adapter_ppl: float) -> TrainingReport:
    return TrainingReport(10.0, adapter_ppl, 4.0, 4.0, 6, 2, 3, 1.0, 0.5)


@pytest.fixture
async def memories(engine: MemoryEngine) -> MemoryEngine:
    """The real engine, holding one fact of Alice's."""
    return await with_facts(engine, ALICE, ["My dog is called Pochi"])


@pytest.fixture
def config(tmp_path: Path) -> AdaptersConfig:
    return AdaptersConfig(adapters_dir=tmp_path / "adapters", base_model_path=tmp_path / "base", base_model="base")


def stub_trainer(monkeypatch, outcome: TrainingReport | Exception) -> None:
    def train(base, data, out_dir: Path, config, progress=None) -> TrainingReport:
        assert data.facts == ("My dog is called Pochi",)
        out_dir.mkdir(parents=True)
        (out_dir / "adapter_config.json").write_text("{}")
        (out_dir / "adapter_model.safetensors").write_bytes(b"weights")
        if progress:
            progress(3, 3)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(jobs_module, "train_lora", train)


async def test_a_good_adapter_is_published(monkeypatch, memories, config) -> None:
    stub_trainer(monkeypatch, report(adapter_ppl=5.0))
    version = await train_and_publish(config, AdapterRegistry(config.registry_path), memories, ALICE)
    assert version.status == AdapterStatus.READY and version.metrics["ppl_reduction"] == 0.5
    assert sorted(p.name for p in version.path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert [p.name for p in config.adapters_dir.iterdir() if p.name.startswith(".")] == []  # no temp left


async def test_a_weak_adapter_is_not_published(monkeypatch, memories, config) -> None:
    stub_trainer(monkeypatch, report(adapter_ppl=9.0))  # 10% better: below the 30% margin
    registry = AdapterRegistry(config.registry_path)
    version = await train_and_publish(config, registry, memories, ALICE)
    assert version.status == AdapterStatus.FAILED and "below 30%" in version.reason
    assert not version.path.exists() and await registry.current(ALICE) is None


async def test_a_crash_marks_the_version_failed(monkeypatch, memories, config) -> None:
    stub_trainer(monkeypatch, RuntimeError("out of memory"))
    registry = AdapterRegistry(config.registry_path)
    with pytest.raises(RuntimeError):
        await train_and_publish(config, registry, memories, ALICE)
    (version,) = await registry.versions(ALICE)
    assert version.status == AdapterStatus.FAILED and "out of memory" in version.reason
    assert list(config.adapters_dir.glob(".*")) == []


async def test_nothing_to_train(memories, config) -> None:
    with pytest.raises(NothingToTrain):
        await train_and_publish(config, AdapterRegistry(config.registry_path), memories, Scope("t", "nobody"))


async def test_job_api_reports_progress_and_the_result(monkeypatch, memories, config) -> None:
    stub_trainer(monkeypatch, report(adapter_ppl=5.0))
    jobs = AdapterJobs(config, AdapterRegistry(config.registry_path), memories)
    job = jobs.start(ALICE)
    assert jobs.status(job.id) is job and job.state in ("queued", "running")
    await job.task  # type: ignore[misc]
    await asyncio.sleep(0)  # the last progress callback hops through the loop
    assert job.state == "ready" and (job.step, job.total) == (3, 3)
    assert job.to_dict()["adapter"]["version"] == 1  # type: ignore[index]


async def test_recover_fails_interrupted_runs(config) -> None:
    registry = AdapterRegistry(config.registry_path)
    version = await registry.begin_version(ALICE, "base", config.adapters_dir)  # a process died while training
    (config.adapters_dir / f".{version.versioned_name}.1234.tmp").mkdir(parents=True)
    (config.adapters_dir / f".{version.versioned_name}.training.lock").touch()  # its lock, freed by its death
    assert await recover_interrupted(registry, config.adapters_dir) == 1
    assert (await registry.versions(ALICE))[0].reason == "interrupted"
    assert list(config.adapters_dir.glob(".*")) == []


async def test_recover_leaves_a_run_that_still_holds_its_lock(config) -> None:
    registry = AdapterRegistry(config.registry_path)
    version = await registry.begin_version(ALICE, "base", config.adapters_dir)
    config.adapters_dir.mkdir(parents=True, exist_ok=True)
    with (config.adapters_dir / f".{version.versioned_name}.training.lock").open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process (here: another open file) is training it
        assert await recover_interrupted(registry, config.adapters_dir) == 0
    assert (await registry.versions(ALICE))[0].status == AdapterStatus.TRAINING
    assert await recover_interrupted(registry, config.adapters_dir) == 1  # the lock is free now

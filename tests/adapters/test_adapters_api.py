"""The adapters API (``/v1/adapters``) and the erasure of a user's adapters by ``DELETE /v1/memories?confirm=true``,
on the real app, the real memory engine (SQLite, ONNX MiniLM), a real registry and real adapter folders on tmp.

Replaced, and why: the trainer (``adapters.jobs.train_lora``) by :class:`FakeTrainer`, which writes the two files
``save_pretrained`` writes and reports progress step by step — real training takes minutes on this CPU (it runs
in tests/integration/test_adapters.py); vLLM by :class:`FakeVllm` (an ``httpx.MockTransport`` that answers the
LoRA API as vLLM 0.32 does, and a one-line chat), so the test can see every load and unload."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from adapters import jobs as jobs_module
from adapters.registry import AdapterRegistry
from adapters.trainer import TrainingReport
from memory import MemoryConfig, MemoryEngine, Scope
from proxy.app import create_app
from proxy.auth import hash_key
from proxy.settings import Settings
from tests.adapters.fake_vllm import FakeVllm

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = "base-model"
ALICE = Scope("acme", "alice")
KEYS = {
    "acme-svc": {"tenant": "acme", "user": "acme-svc", "trusted": True},
    "acme-alice": {"tenant": "acme", "user": "alice"},
    "acme-bob": {"tenant": "acme", "user": "bob"},
    "globex-alice": {"tenant": "globex", "user": "alice"},
    "ops-admin": {"tenant": "ops", "user": "ops", "admin": True},
}


class FakeTrainer:
    """Stands in for ``train_lora``: ``steps`` progress calls (each waits for ``gate``), then the adapter files."""

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.gate = threading.Event()
        self.gate.set()
        self.runs = 0

    def __call__(self, base: Path, data: Any, out_dir: Path, config: Any, progress: Any = None) -> TrainingReport:
        self.runs += 1
        for step in range(1, self.steps + 1):
            while not self.gate.wait(0.01):
                if progress:
                    progress(step - 1, self.steps)  # what the real trainer does every step: may raise to stop
            if progress:
                progress(step, self.steps)
        out_dir.mkdir(parents=True)
        (out_dir / "adapter_config.json").write_text("{}")
        (out_dir / "adapter_model.safetensors").write_bytes(b"weights")
        return TrainingReport(10.0, 5.0, 4.0, 4.0, 6, 2, self.steps, 0.1, 0.5)


class Vllm(FakeVllm):
    """The LoRA API of :class:`FakeVllm`, a chat that names the model it ran, and unloads that fail on demand."""

    fail_unloads = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            model = json.loads(request.content)["model"]
            return httpx.Response(200, json={"id": "c", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": model}, "finish_reason": "stop"}]})
        if request.url.path == "/v1/unload_lora_adapter" and self.fail_unloads:
            self.fail_unloads -= 1
            return httpx.Response(500, json={"error": {"message": "worker busy", "code": 500}})
        return await super().handle(request)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MemoryEngine]:
    engine = await MemoryEngine.open(MemoryConfig(data_dir=tmp_path_factory.mktemp("adapters-api") / "mem"))
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
def trainer(monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakeTrainer()
    monkeypatch.setattr(jobs_module, "train_lora", fake)
    yield fake
    fake.gate.set()  # never leave a worker thread waiting


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps([{"sha256": hash_key(k), "name": k, **v} for k, v in KEYS.items()]))
    (tmp_path / "base").mkdir()
    return Settings(
        upstream_url="http://vllm.test/v1", keys_file=keys_file, data_dir=tmp_path, cache_salt=False,
        default_model=BASE, adapters_enabled=True, adapters_base_model_path=tmp_path / "base",
    )


Api = Callable[[str], httpx.AsyncClient]


@pytest.fixture
def vllm() -> Vllm:
    return Vllm()


async def make_api(settings: Settings, engine: MemoryEngine, vllm: Vllm) -> AsyncIterator[Api]:
    for scope in await engine.users():
        await engine.forget_user(scope.user, tenant=scope.tenant)
    app = create_app(settings, http_client=httpx.AsyncClient(transport=vllm.transport()), memory=engine)
    transport = httpx.ASGITransport(app=app)
    opened: list[httpx.AsyncClient] = []

    def client(key: str) -> httpx.AsyncClient:
        opened.append(httpx.AsyncClient(transport=transport, base_url="http://proxy.test",
                                        headers={"authorization": f"Bearer {key}"}))
        return opened[-1]

    yield client
    for each in opened:
        await each.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def api(settings: Settings, engine: MemoryEngine, vllm: Vllm, trainer: FakeTrainer) -> AsyncIterator[Api]:
    async for client in make_api(settings, engine, vllm):
        yield client


async def remember(client: httpx.AsyncClient, text: str, **query: str) -> None:
    response = await client.post("/v1/memories", params=query, json={"content": text})
    assert response.status_code == 201, response.text


async def train(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/adapters/train", json=body)
    assert response.status_code == 202, response.text
    return response.json()


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/adapters/jobs/{job_id}")).json()
        if job["state"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


async def running(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once its (gated) training thread has reported its first progress."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/adapters/jobs/{job_id}")).json()
        if job["state"] == "running" and job["total"]:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not start")


def error_code(response: httpx.Response, status: int) -> str | None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error["code"]


def version_folders(settings: Settings) -> list[str]:
    return sorted(p.name for p in (settings.data_dir / "adapters").glob("*") if p.is_dir())


# --- start → status → list → show → retire ------------------------------------------------------------------


async def test_train_status_list_show_retire(api: Api, trainer: FakeTrainer) -> None:
    alice = api("acme-alice")
    await remember(alice, "My dog is called Pochi")
    job = await train(alice, epochs=2)
    assert job["object"] == "adapter.training_job" and job["user"] == "alice" and job["state"] in ("queued", "running")
    done = await finished(alice, job["id"])
    assert done["state"] == "ready" and (done["step"], done["total"]) == (3, 3) and done["error"] is None
    assert done["adapter"]["version"] == 1 and done["adapter"]["status"] == "ready"

    listing = (await alice.get("/v1/adapters")).json()
    (adapter,) = listing["data"]
    assert adapter["status"] == "ready" and adapter["metrics"]["ppl_reduction"] == 0.5
    assert "path" not in adapter and "tenant" not in adapter
    assert (await alice.get("/v1/adapters/current")).json()["version"] == 1
    assert (await alice.get("/v1/adapters/1")).json() == adapter

    retired = await alice.post("/v1/adapters/1/retire")
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    assert error_code(await alice.get("/v1/adapters/current"), 404) == "no_adapter"
    assert error_code(await alice.post("/v1/adapters/1/retire"), 409) == "adapter_not_ready"
    assert error_code(await alice.post("/v1/adapters/7/retire"), 404) == "not_found"


async def test_a_second_job_for_the_same_user_is_a_409(api: Api, trainer: FakeTrainer) -> None:
    service, bob = api("acme-svc"), api("acme-bob")
    await remember(service, "I live in Lyon", user="carol")
    await remember(bob, "I play the cello")
    trainer.gate.clear()
    first = await train(service, user="carol")
    assert error_code(await service.post("/v1/adapters/train", json={"user": "carol"}), 409) == "training_in_progress"
    other = await train(bob)  # another user: queued behind carol's (one job at a time), not refused
    assert (await running(service, first["id"]))["step"] == 0
    assert (await bob.get(f"/v1/adapters/jobs/{other['id']}")).json()["state"] == "queued"
    trainer.gate.set()
    assert (await finished(service, first["id"]))["state"] == "ready"
    assert (await finished(bob, other["id"]))["state"] == "ready"
    assert (await finished(service, (await train(service, user="carol"))["id"]))["adapter"]["version"] == 2


async def test_other_scopes_get_404_or_403(api: Api) -> None:
    alice = api("acme-alice")
    await remember(alice, "My dog is called Pochi")
    job = await train(alice)
    await finished(alice, job["id"])
    path = f"/v1/adapters/jobs/{job['id']}"
    for stranger in ("acme-bob", "globex-alice"):
        assert error_code(await api(stranger).get(path), 404) == "not_found"
        assert error_code(await api(stranger).get("/v1/adapters/1"), 404) == "not_found"
        assert error_code(await api(stranger).post("/v1/adapters/1/retire"), 404) == "not_found"
    assert (await api("acme-svc").get(path)).status_code == 200  # a trusted key of the tenant
    assert (await api("ops-admin").get(path)).status_code == 200  # an admin key
    assert error_code(await api("acme-bob").get("/v1/adapters", params={"user": "alice"}), 403) == "permission_denied"
    assert error_code(await api("globex-alice").get("/v1/adapters", params={"tenant": "acme"}), 403)
    assert (await api("globex-alice").get("/v1/adapters")).json()["data"] == []
    admin = await api("ops-admin").get("/v1/adapters", params={"tenant": "acme", "user": "alice"})
    assert [a["version"] for a in admin.json()["data"]] == [1]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/adapters/train", {"epochs": 0}),
        ("POST", "/v1/adapters/train", {"epochs": "2"}),
        ("POST", "/v1/adapters/train", {"steps": 3}),
        ("POST", "/v1/adapters/train", {"user": ""}),
        ("POST", "/v1/adapters/train?usr=bob", None),
        ("POST", "/v1/adapters/train?user=alice", {"user": "bob"}),
        ("GET", "/v1/adapters?usr=alice", None),
        ("GET", "/v1/adapters/abc", None),
        ("POST", "/v1/adapters/0/retire", None),
        ("GET", "/v1/adapters/jobs/" + "x" * 65, None),
        ("POST", "/v1/adapters/train", b"{"),
    ],
)
async def test_malformed_requests_are_400_and_change_nothing(
    api: Api, trainer: FakeTrainer, settings: Settings, method: str, path: str, body: Any
) -> None:
    client = api("acme-svc")
    await remember(client, "My dog is called Pochi", user="alice")
    if isinstance(body, bytes):
        response = await client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = await client.request(method, path, json=body)
    error_code(response, 400)
    assert response.json()["error"]["type"] == "invalid_request_error"
    registry = AdapterRegistry(settings.data_dir / "adapters" / "registry.sqlite3")
    assert trainer.runs == 0 and await registry.versions(ALICE) == []


async def test_adapters_off_is_404_and_erasure_still_works(
    settings: Settings, engine: MemoryEngine, vllm: Vllm, trainer: FakeTrainer
) -> None:
    adapters_dir = settings.data_dir / "adapters"
    registry = AdapterRegistry(adapters_dir / "registry.sqlite3")
    left = await registry.begin_version(ALICE, BASE, adapters_dir)  # trained while adapters were on
    left.path.mkdir()
    await registry.publish(left, {})
    off = settings.model_copy(update={"adapters": settings.adapters.model_copy(update={"enabled": False})})
    async for api in make_api(off, engine, vllm):
        alice = api("acme-alice")
        for method, path in [("POST", "/v1/adapters/train"), ("GET", "/v1/adapters"), ("GET", "/v1/adapters/current"),
                             ("GET", "/v1/adapters/jobs/x"), ("POST", "/v1/adapters/1/retire")]:
            assert error_code(await alice.request(method, path), 404) == "adapters_unavailable"
        await remember(alice, "My dog is called Pochi")  # memory itself is unaffected
        erased = await alice.delete("/v1/memories", params={"confirm": "true"})
        assert erased.json() == {"object": "memory.user_deleted", "user": "alice", "deleted": 1, "adapters_deleted": 1}
    assert trainer.runs == 0 and await registry.versions(ALICE) == [] and version_folders(settings) == []
    assert vllm.calls == []  # adapters off: no loader, nothing asked of vLLM


async def test_openapi_documents_the_adapter_routes(api: Api) -> None:
    spec = (await api("acme-alice").get("/openapi.json")).json()
    assert {"/v1/adapters/train", "/v1/adapters/jobs/{job_id}", "/v1/adapters", "/v1/adapters/current",
            "/v1/adapters/{version}", "/v1/adapters/{version}/retire"} <= set(spec["paths"])
    assert "202" in spec["paths"]["/v1/adapters/train"]["post"]["responses"]
    assert "adapters_deleted" in spec["components"]["schemas"]["DeletedUser"]["properties"]


# --- erasing a user erases their adapters ---------------------------------------------------------------------


async def chat(client: httpx.AsyncClient, user: str) -> str:
    body = {"model": BASE, "user": user, "messages": [{"role": "user", "content": "hi"}]}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


async def test_delete_all_erases_the_users_adapters(api: Api, vllm: Vllm, settings: Settings) -> None:
    service = api("acme-svc")
    for user in ("alice", "bob"):
        await remember(service, f"{user} has a dog called Pochi", user=user)
        for _ in range(2):  # v1 is retired by v2: both folders stay on disk
            await finished(service, (await train(service, user=user))["id"])
    served = await chat(service, "alice")
    assert served.startswith("mp-") and served in vllm.loaded  # alice's adapter is loaded in vLLM
    assert len(version_folders(settings)) == 4

    response = await service.delete("/v1/memories", params={"user": "alice", "confirm": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] >= 1 and response.json()["adapters_deleted"] == 2
    registry = AdapterRegistry(settings.data_dir / "adapters" / "registry.sqlite3")
    assert await registry.versions(ALICE) == [] and len(await registry.versions(Scope("acme", "bob"))) == 2
    assert len(version_folders(settings)) == 2 and not list((settings.data_dir / "adapters").glob(".*"))
    assert ("/v1/unload_lora_adapter", {"lora_name": served}) in vllm.calls and served not in vllm.loaded
    assert await chat(service, "alice") == BASE
    assert error_code(await service.get("/v1/adapters/current", params={"user": "alice"}), 404) == "no_adapter"
    metrics = (await service.get("/metrics")).text
    assert 'memproxy_adapter_loader_total{event="load"} 1.0' in metrics
    assert 'memproxy_adapter_loader_total{event="unload"} 1.0' in metrics


async def test_delete_all_stops_a_running_training(api: Api, trainer: FakeTrainer, settings: Settings) -> None:
    alice = api("acme-alice")
    await remember(alice, "My dog is called Pochi")
    trainer.gate.clear()
    job = await train(alice)
    await running(alice, job["id"])
    response = await alice.delete("/v1/memories", params={"confirm": "true"})
    assert response.status_code == 200 and response.json()["adapters_deleted"] == 1  # the failed row of the run
    stopped = (await alice.get(f"/v1/adapters/jobs/{job['id']}")).json()
    assert stopped["state"] == "cancelled" and stopped["adapter"] is None
    assert version_folders(settings) == [] and not list((settings.data_dir / "adapters").glob(".*"))
    assert (await alice.get("/v1/adapters")).json()["data"] == []


async def test_a_failed_unload_is_an_error_and_a_retry_finishes(api: Api, vllm: Vllm, settings: Settings) -> None:
    alice = api("acme-alice")
    await remember(alice, "My dog is called Pochi")
    await finished(alice, (await train(alice))["id"])
    await chat(alice, "alice")
    vllm.fail_unloads = 1
    failed = await alice.delete("/v1/memories", params={"confirm": "true"})
    assert error_code(failed, 502) == "adapter_unload_failed"
    assert version_folders(settings) == []  # nothing servable is left meanwhile
    assert [a["status"] for a in (await alice.get("/v1/adapters")).json()["data"]] == ["retired"]
    retried = await alice.delete("/v1/memories", params={"confirm": "true"})
    assert retried.status_code == 200 and retried.json()["adapters_deleted"] == 1 and not vllm.loaded


async def test_start_sweeps_folders_without_a_registry_row(settings: Settings, engine: MemoryEngine) -> None:
    adapters_dir = settings.data_dir / "adapters"
    registry = AdapterRegistry(adapters_dir / "registry.sqlite3")
    kept = await registry.begin_version(ALICE, BASE, adapters_dir)
    kept.path.mkdir()
    await registry.publish(kept, {})
    orphan = adapters_dir / "mp-0123456789abcdef0123-v3"
    leftovers = [orphan, adapters_dir / f".{orphan.name}.1a2b3c4d.erased.tmp", adapters_dir / "notes"]
    for path in leftovers:
        path.mkdir()
    app = create_app(settings, http_client=httpx.AsyncClient(transport=Vllm().transport()), memory=engine)
    await app.state.adapters_service.start()
    assert version_folders(settings) == sorted([kept.path.name, "notes"])

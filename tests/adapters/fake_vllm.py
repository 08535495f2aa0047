"""A stand-in for vLLM's runtime LoRA API, answering as vLLM 0.32 does (status codes and messages checked against
the real server in tests/integration/test_adapters.py). Used where a test needs exact control: concurrency,
eviction order, every error status. The real vLLM runs in the integration tier."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx


class FakeVllm:
    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.loaded: dict[str, str] = {}
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.delay_s = delay_s
        self.fail_with: int | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        path = request.url.path
        self.calls.append((path, body))
        await asyncio.sleep(self.delay_s)
        name = str(body.get("lora_name"))
        if path == "/v1/load_lora_adapter":
            if self.fail_with == 500:
                return _error(500, "Call to add_lora method failed: Worker failed with error 'invalid header length'")
            if not body.get("load_inplace") and name in self.loaded:
                return _error(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                              "adapter in place, set 'load_inplace' to True.")
            if not Path(str(body["lora_path"])).exists():
                return _error(404, f"Loading lora {name} failed: No adapter found for <path>")
            self.loaded[name] = str(body["lora_path"])
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' added successfully.")
        if path == "/v1/unload_lora_adapter":
            if name not in self.loaded:
                return _error(404, f"The lora adapter '{name}' cannot be found.")
            del self.loaded[name]
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' removed successfully.")
        return _error(404, "Not Found")

    def count(self, path: str) -> int:
        return sum(1 for called, _ in self.calls if called == path)


def _error(status: int, message: str) -> httpx.Response:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    return httpx.Response(status, json={"error": {"message": message, "type": kind, "param": None, "code": status}})

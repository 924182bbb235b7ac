"""Helpers of the cross-package tests: real processes, real installs, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pip_install(target: Path, *projects: Path) -> None:
    """Install plugin projects (directories with a pyproject) into ``target``, as pip would."""
    subprocess.run(
        [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--python", sys.executable, "--target", str(target), *map(str, projects)],
        check=True, timeout=300,
    )


def vendo_env(site: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


def run_vendo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vendo", *args], capture_output=True, text=True, env=env, timeout=120)


class Server:
    """A `vendo serve` process on a free loopback port."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(f"server-{self.port}.log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vendo", "serve", "--port", str(self.port), *args],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                return httpx.get(self.url + "/api/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

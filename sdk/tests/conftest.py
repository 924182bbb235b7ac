"""Fixtures of the SDK's tests: a fresh virtual environment holding the kernel and the SDK,
as a plugin author's machine would (built once per test module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class Venv:
    """A virtual environment with ``vendo`` and ``vendo-sdk`` installed (editable) from this repo."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.python = self.bin / "python"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") and k != "PYTHONPATH"}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env["UV_COMPILE_BYTECODE"] = "1"
        return env

    def run(self, command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run a shell command inside the environment; fail with its output if it fails."""
        result = subprocess.run(["bash", "-c", command], cwd=cwd, env=self.env(), capture_output=True,
                                text=True, timeout=timeout)
        assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result

    def uv_install(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(self.python), *args],
                       check=True, timeout=900, env=self.env())


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("venv") / ".venv"
    subprocess.run([sys.executable, "-m", "uv", "venv", "--quiet", "--seed", "--python", sys.executable, str(root)],
                   check=True, timeout=300)
    environment = Venv(root)
    environment.uv_install("-e", str(REPO / "core"), "-e", str(REPO / "sdk"))
    return environment

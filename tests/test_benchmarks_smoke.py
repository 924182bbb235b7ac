"""Every benchmark under benchmarks/ still runs: ``--quick`` exits 0 and prints its ratios.

Timings are never asserted; this only keeps the scripts from rotting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))


def test_benchmarks_exist() -> None:
    names = {path.name for path in BENCHMARKS}
    assert {"bench_hook_dispatch.py", "bench_startup.py"} <= names


@pytest.mark.parametrize("script", BENCHMARKS, ids=[path.stem for path in BENCHMARKS])
def test_benchmark_runs_quick(script: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_")}
    done = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, f"{script.name} --quick exited {done.returncode}\n{output}"
    assert "ratio" in done.stdout, f"{script.name} --quick printed no ratio\n{output}"

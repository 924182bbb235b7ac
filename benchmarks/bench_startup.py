"""Start-up cost: ``import vendo`` in a fresh interpreter, and building + starting the app.

Run: ``uv run python benchmarks/bench_startup.py`` (``--quick`` for a smoke run).

(a) Wall time of ``python -c "import vendo"`` in a fresh subprocess, best of N, against
    ``python -c pass`` (interpreter start-up, the baseline) and, for scale,
    ``python -c "import vendo.app"`` (what the HTTP app pulls in; not with ``--quick``).
    Also checks, and prints, that ``import vendo`` leaves the heavy libraries unloaded.
(b) In a subprocess working in a fresh temporary directory (SQLite database there),
    after ``vendo db upgrade``: the time to import, ``create_app()`` with every installed
    plugin (entry points of group ``vendo.plugins``), run the lifespan start-up
    (``TestClient`` as a context manager: database check, ``vendo_startup`` hooks, outbox
    dispatcher) and answer the first ``GET /api/health``. Baseline: a bare FastAPI app
    with one route, started the same way. Best of N subprocesses.

Bytecode: children cache ``.pyc`` files in a private temporary ``PYTHONPYCACHEPREFIX``
and each figure follows a warm-up run, as for an installed app whose bytecode exists.
(This matters where ``PYTHONDONTWRITEBYTECODE`` is set: every import then compiles from
source, several times slower.) ``--inherit-bytecode-env`` keeps the environment's own
settings instead. ``--quick`` does one run of each, without the warm-up.

Figures are printed with ratios against the baselines of the same run, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEAVY = ("fastapi", "sqlalchemy", "stripe", "litellm", "torch", "numpy")

IMPORT_CASES = [
    ("python -c pass (baseline)", "pass"),
    ("python -c 'import vendo'", "import vendo"),
    ("python -c 'import vendo.app'", "import vendo.app"),
]

HEAVY_CHECK = f"""
import json, sys
import vendo
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""

# Child programs for (b): print one JSON line of phase timings (seconds, perf_counter).
VENDO_APP = """
import json, time
t0 = time.perf_counter()
from fastapi.testclient import TestClient
from vendo.app import create_app
t1 = time.perf_counter()
app = create_app()
t2 = time.perf_counter()
with TestClient(app) as client:
    t3 = time.perf_counter()
    response = client.get("/api/health")
    t4 = time.perf_counter()
kernel = app.state.kernel
print(json.dumps({
    "import": t1 - t0, "build": t2 - t1, "start": t3 - t2, "first_request": t4 - t3,
    "status": response.status_code, "health": response.json().get("status"),
    "plugins": [[p.name, p.status] for p in kernel.plugins],
}))
"""

BARE_APP = """
import json, time
t0 = time.perf_counter()
from fastapi import FastAPI
from fastapi.testclient import TestClient
t1 = time.perf_counter()
app = FastAPI()

@app.get("/ping")
def ping():
    return {"ok": True}

t2 = time.perf_counter()
with TestClient(app) as client:
    t3 = time.perf_counter()
    response = client.get("/ping")
    t4 = time.perf_counter()
print(json.dumps({
    "import": t1 - t0, "build": t2 - t1, "start": t3 - t2, "first_request": t4 - t3,
    "status": response.status_code, "health": "ok", "plugins": [],
}))
"""


_BYTECODE_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
_child_base: dict[str, str] = {}


def configure_children(pycache_prefix: str | None) -> str:
    """Set the environment of every child process; returns how bytecode is handled.

    With ``pycache_prefix``, children cache bytecode in that private directory (nothing
    is written next to the sources or in the venv), as an installed app would have its
    ``.pyc`` files; otherwise they inherit this environment's bytecode settings.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_")}
    if pycache_prefix is not None:
        for name in _BYTECODE_ENV:
            env.pop(name, None)
        env["PYTHONPYCACHEPREFIX"] = pycache_prefix
        mode = "cached in a private PYTHONPYCACHEPREFIX"
    elif env.get("PYTHONDONTWRITEBYTECODE"):
        mode = "as inherited: PYTHONDONTWRITEBYTECODE is set, every import compiles from source"
    else:
        mode = "as inherited"
    _child_base.clear()
    _child_base.update(env)
    return mode


def child_env(data_dir: Path | None = None) -> dict[str, str]:
    """The children's environment: no developer VENDO_* settings, optionally a data dir."""
    env = dict(_child_base)
    if data_dir is not None:
        env["VENDO_DATA_DIR"] = str(data_dir)
        env["VENDO_LOG_LEVEL"] = "WARNING"
    return env


def wall_time(code: str, cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=child_env(), check=True)
    return time.perf_counter() - started


def bench_imports(runs: int, cwd: str, cases: list[tuple[str, str]], warm_up: bool) -> list[tuple[str, float]]:
    if warm_up:  # first runs compile and cache bytecode; not measured
        for _, code in cases:
            wall_time(code, cwd)
    best = {label: float("inf") for label, _ in cases}
    for _ in range(runs):  # interleaved, so a noisy moment hits every case alike
        for label, code in cases:
            best[label] = min(best[label], wall_time(code, cwd))
    return [(label, best[label]) for label, _ in cases]


def heavy_after_import(cwd: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", HEAVY_CHECK], cwd=cwd, env=child_env(), check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def db_upgrade(workdir: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "vendo.cli", "db", "upgrade"],
        cwd=workdir, env=child_env(workdir / ".vendo"), capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"vendo db upgrade failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def run_app(program: str, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=workdir, env=child_env(workdir / ".vendo"),
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"app start-up run failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] != 200:
        raise SystemExit(f"first request answered {result['status']}, expected 200: {result}")
    result["wall"] = wall
    return result


def bench_app(runs: int, warm_up: bool) -> tuple[float, dict[str, Any], dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    programs = (("bare", BARE_APP), ("vendo", VENDO_APP))
    with tempfile.TemporaryDirectory(prefix="vendo-bench-") as tmp:
        workdir = Path(tmp)
        upgrade = db_upgrade(workdir)
        if warm_up:
            for _, program in programs:
                run_app(program, workdir)
        for _ in range(runs):
            for label, program in programs:
                result = run_app(program, workdir)
                total = result["build"] + result["start"]
                if label not in best or total < best[label]["build"] + best[label]["start"]:
                    best[label] = result
    return upgrade, best["vendo"], best["bare"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, no warm-up (smoke test)")
    parser.add_argument("--runs", type=int, default=10, help="subprocess runs per figure; the best is kept")
    parser.add_argument(
        "--inherit-bytecode-env", action="store_true",
        help="children keep this environment's PYTHONDONTWRITEBYTECODE / PYTHONPYCACHEPREFIX "
        "instead of a private, warmed-up bytecode cache",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vendo-bench-pycache-") as pycache:
        return run(args, None if args.inherit_bytecode_env else pycache)


def run(args: argparse.Namespace, pycache_prefix: str | None) -> int:
    import_runs = 1 if args.quick else args.runs
    app_runs = 1 if args.quick else max(1, args.runs // 2)
    warm_up = not args.quick
    bytecode = configure_children(pycache_prefix)

    print(f"start-up: Python {platform.python_version()}, {os.cpu_count()} CPU(s), "
          f"{'quick (figures meaningless)' if args.quick else f'best of {import_runs} / {app_runs} runs after a warm-up'}")
    print(f"bytecode: {bytecode}")

    with tempfile.TemporaryDirectory(prefix="vendo-bench-") as cwd:
        # --quick leaves out the 'import vendo.app' row (seconds of fastapi + sqlalchemy imports).
        cases = IMPORT_CASES[:2] if args.quick else IMPORT_CASES
        imports = bench_imports(import_runs, cwd, cases, warm_up)
        heavy = heavy_after_import(cwd)
    baseline = imports[0][1]
    print()
    print("(a) fresh interpreter, wall time")
    header = f"{'command':<30} {'seconds':>8} {'ratio vs pass':>14} {'extra ms':>9}"
    print(header)
    print("-" * len(header))
    for label, seconds in imports:
        print(f"{label:<30} {seconds:>8.3f} {seconds / baseline:>14.2f} {(seconds - baseline) * 1000:>9.1f}")
    verdict = "none loaded (ok)" if not heavy else f"LOADED: {', '.join(heavy)} (import vendo should stay light)"
    print(f"heavy modules after 'import vendo' ({', '.join(HEAVY)}): {verdict}")

    upgrade, vendo, bare = bench_app(app_runs, warm_up)
    plugins = ", ".join(f"{name} ({status})" for name, status in vendo["plugins"])
    print()
    print(f"(b) build + lifespan start-up, TestClient, SQLite; plugins: {plugins}; health: {vendo['health']}")
    print(f"    vendo db upgrade (whole CLI process, run once): {upgrade:.3f} s")
    header = (f"{'app':<24} {'import s':>9} {'build s':>8} {'start s':>8} {'build+start s':>14} "
              f"{'1st req s':>10} {'ratio (build+start)':>20}")
    print(header)
    print("-" * len(header))
    base_total = bare["build"] + bare["start"]
    for label, result in (("bare FastAPI (baseline)", bare), ("vendo create_app()", vendo)):
        total = result["build"] + result["start"]
        print(f"{label:<24} {result['import']:>9.3f} {result['build']:>8.3f} {result['start']:>8.3f} "
              f"{total:>14.3f} {result['first_request']:>10.3f} {total / base_total:>20.1f}")
    print("ratio = seconds / baseline seconds of the same run (higher is slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

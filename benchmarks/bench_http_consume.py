"""HTTP ``POST /api/v1/consume`` requests per second on one `vendo serve` worker, against a
trivial FastAPI endpoint served by the same uvicorn (uvloop + httptools) in the same run.

Both servers run as separate processes on loopback, one after the other under the same load:
``--concurrency`` (16) keep-alive connections, each with one request in flight. The consume
route authenticates a session token, resolves the workspace, consumes one unit of an unlimited
metered feature (ledger + counter, SQLite by default) and answers the decision. A third case
runs the same with group commit off (``VENDO_ENTITLEMENTS__GROUP_COMMIT=0``: every consume in a
transaction of its own). Figures move with the machine's load: read the ratio.

The load generator is **wrk** (Debian package ``wrk``: ``apt-get install wrk``) when it is on
the PATH, one wrk thread, so the servers keep the other core. Without it the script falls back
to an httpx client in this process and says so: that client shares the 2 cores with the
servers and tops out near 250-300 req/s here, so its baseline is client-bound and the ratio
understates Vendo's cost. ``--client python`` forces the fallback.

    uv run python benchmarks/bench_http_consume.py            # ~30 s
    uv run python benchmarks/bench_http_consume.py --quick    # smoke run, figures meaningless
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

CATALOG = textwrap.dedent(
    """
    currency = "usd"
    [features.calls]
    kind = "metered"
    period = "month"
    [plans.free]
    name = "Free"
    default = true
    features = { calls = "unlimited" }
    """
)

TRIVIAL_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/api/v1/consume")
    async def consume() -> dict:
        return {"allowed": True}
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} not ready after {timeout}s")


async def load(url: str, headers: dict[str, str], body: dict, seconds: float, concurrency: int) -> tuple[int, int]:
    """Keep ``concurrency`` requests in flight for ``seconds``; return (ok, failed)."""
    ok = failed = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                response = await client.post(url, headers=headers, json=body)
                if response.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def wrk_load(url: str, headers: dict[str, str], body: dict, seconds: float, concurrency: int,
             work: Path) -> tuple[float, int, str]:
    """Run wrk (1 thread, ``concurrency`` connections) for ``seconds``; return (req/s, non-2xx
    responses, latency p50/p99 text)."""
    script = work / f"post-{len(headers)}.lua"
    auth = "\n".join(f'wrk.headers["{name}"] = {json.dumps(value)}' for name, value in headers.items())
    script.write_text(WRK_SCRIPT.format(body=json.dumps(json.dumps(body)), auth=auth))
    done = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "30s",
                           "-s", str(script), url], capture_output=True, text=True, check=True)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout)
    if errors and any(int(count) for count in errors.groups()):
        raise SystemExit(f"wrk: {errors.group(0)}\n{done.stdout}")
    p50 = re.search(r"^\s+50%\s+(\S+)", done.stdout, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", done.stdout, re.M).group(1)
    return rate, int(bad.group(1)) if bad else 0, f"{p50} / {p99}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                        help="load generator: wrk when installed (auto), or the httpx fallback")
    parser.add_argument("--py-spy", metavar="FILE", type=Path,
                        help="sample the vendo server with py-spy during its run (collapsed stacks to FILE)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    elif client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("error: wrk is not on the PATH (apt-get install wrk)")

    work = Path(tempfile.mkdtemp(prefix="vendo-bench-http-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_")}
    env.update({"VENDO_DATA_DIR": str(work / "data"), "VENDO_LOG_LEVEL": "WARNING",
                "VENDO_PLUGINS__AUTOLOAD": "false", "PYTHONPYCACHEPREFIX": str(work / "pycache")})
    (work / "catalog.toml").write_text(CATALOG)
    (work / "trivial.py").write_text(TRIVIAL_APP)
    run = lambda *a: subprocess.run([sys.executable, "-m", "vendo", *a], env=env, cwd=work, check=True,  # noqa: E731
                                    capture_output=True, text=True)
    run("db", "upgrade")
    run("plans", "load", str(work / "catalog.toml"))
    setup = textwrap.dedent(
        """
        from vendo import Kernel
        k = Kernel().load()
        with k.session() as s:
            user = k.identity.create_user(s, "bench@example.com")
            workspace = k.identity.memberships(s, user.id)[0]["id"]
            print(workspace, k.sessions.issue(s, user.id, "bench").access_token)
        """
    )
    workspace, token = subprocess.run([sys.executable, "-c", setup], env={**env, "VENDO_SESSIONS__ACCESS_TTL": "86400"},
                                      cwd=work, check=True, capture_output=True, text=True).stdout.split()
    env["VENDO_SESSIONS__ACCESS_TTL"] = "86400"

    vendo_port, trivial_port, alone_port = free_port(), free_port(), free_port()
    servers = [
        subprocess.Popen([sys.executable, "-m", "vendo", "serve", "--port", str(vendo_port)], env=env, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "vendo", "serve", "--port", str(alone_port)],
                         env={**env, "VENDO_ENTITLEMENTS__GROUP_COMMIT": "0"}, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "uvicorn", "trivial:app", "--port", str(trivial_port),
                          "--loop", "auto", "--http", "auto", "--log-level", "warning"], env=env, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_ready(f"http://127.0.0.1:{vendo_port}/api/health", servers[0])
        wait_ready(f"http://127.0.0.1:{alone_port}/api/health", servers[1])
        wait_ready(f"http://127.0.0.1:{trivial_port}/docs", servers[2])
        headers = {"Authorization": f"Bearer {token}"}
        body = {"feature": "calls", "subject": workspace}
        cases = [("trivial FastAPI endpoint", f"http://127.0.0.1:{trivial_port}/api/v1/consume", {}, {}),
                 ("vendo POST /api/v1/consume", f"http://127.0.0.1:{vendo_port}/api/v1/consume", headers, body),
                 ("  same, group commit off", f"http://127.0.0.1:{alone_port}/api/v1/consume", headers, body)]
        results, latencies = {}, {}
        for name, url, h, b in cases:
            asyncio.run(load(url, h, b, min(1.0, seconds), args.concurrency))  # warm-up
            spy = None
            if args.py_spy and name.startswith("vendo"):
                spy = subprocess.Popen(["py-spy", "record", "--pid", str(servers[0].pid), "--format", "raw",
                                        "--threads", "--gil", "-o", str(args.py_spy.resolve()),
                                        "-d", str(max(1, round(seconds)))], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            if client == "wrk":
                results[name], failed, latencies[name] = wrk_load(url, h, b, seconds, args.concurrency, work)
            else:
                ok, failed = asyncio.run(load(url, h, b, seconds, args.concurrency))
                results[name], latencies[name] = ok / seconds, "-"
            if spy is not None:
                spy.wait(timeout=60)
            if failed:
                raise SystemExit(f"{name}: {failed} failed requests")
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=20)

    baseline = results["trivial FastAPI endpoint"]
    print(f"HTTP consume, 1 worker each, {args.concurrency} concurrent requests, {seconds:.0f} s per case"
          + (", quick (figures meaningless)" if args.quick else ""))
    print("load generator: " + ("wrk, 1 thread" if client == "wrk" else
                                "httpx in this process (wrk not found or not chosen): client-bound, "
                                "the ratio understates Vendo's cost"))
    print(f"{'case':32} {'req/s':>10} {'p50 / p99':>20} {'ratio vs trivial':>18}")
    for name, rate in results.items():
        print(f"{name:32} {rate:10,.0f} {latencies[name]:>20} {baseline / rate:18.1f}")
    print("ratio = trivial endpoint's req/s / this case's req/s (higher is slower)")


if __name__ == "__main__":
    main()

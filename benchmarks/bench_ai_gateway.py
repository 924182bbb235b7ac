"""Latency Vendo's AI gateway adds: ``POST /v1/chat/completions`` on one `vendo serve` worker
(API-key auth, rate limit, model allow-list, holds on the call, token and spend meters,
commit with tokens/cost/latency in the ledger, SQLite) against calling the same loopback
upstream through litellm directly, in the same run; streaming and not, and the streaming
time to first token.

Three processes on loopback: the deterministic OpenAI-compatible upstream
(``vendo_ai_litellm.upstream``), `vendo serve` with vendo-ai-litellm and vendo-auth-apikeys,
and this client, which sends sequential requests on one keep-alive connection:

- ``raw httpx -> upstream``: the floor (HTTP + the upstream itself);
- ``litellm -> upstream``: ``litellm.acompletion(api_base=...)`` in this process, the baseline;
- ``httpx -> vendo -> litellm -> upstream``: the gateway.

The gateway's added latency is its figure minus litellm's (both include litellm's own cost
and the upstream). Figures move with the machine's load: read the differences and ratios.

    uv run python benchmarks/bench_ai_gateway.py            # ~1 min
    uv run python benchmarks/bench_ai_gateway.py --quick    # smoke run, figures meaningless

``--gateway-bench`` measures Vendo beside LiteLLM's own proxy with ``../shared/tools/gateway-bench``
in one interleaved run (its ``run_anchor.sh`` starts the upstream and the two LiteLLM proxies;
this script starts the Vendo servers it adds as extra targets, each with its own SQLite data
directory and API key): ``vendo`` (this tree, the catalog above: AI meters without limits),
``vendo-limited`` (this tree, finite quotas on ``ai_chat``/``ai_tokens``/``ai_spend``, so every
call is held then committed) and, with ``--before REV``, ``vendo-before`` (that commit's
``core/src`` and ``plugins/*/src`` from ``git archive``, on the same catalog as ``vendo``). The
tables land in ``benchmarks/results/gateway-bench-ai-<time>.{md,json}``.

    uv run python benchmarks/bench_ai_gateway.py --gateway-bench --before HEAD~5   # ~6 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http_consume import free_port, wait_ready  # noqa: E402

CATALOG = textwrap.dedent(
    """
    currency = "usd"
    [features.ai_chat]
    kind = "metered"
    [features.ai_tokens]
    kind = "metered"
    [features.ai_spend]
    kind = "metered"
    [plans.free]
    name = "Free"
    default = true
    features = { ai_chat = "unlimited", ai_tokens = "unlimited", ai_spend = "unlimited" }
    ai = { managed = true }
    """
)

CONFIG = textwrap.dedent(
    """
    [plugins]
    enabled = ["ai-litellm", "auth-apikeys"]

    [ai-litellm]
    api_key = "sk-bench-operator"
    api_base = "http://127.0.0.1:{port}/v1"
    timeout = 30

    [[ai-litellm.models]]
    id = "bench-chat"
    model = "openai/loopback-chat"
    input_cost_per_token = 0.000001
    output_cost_per_token = 0.000002
    """
)

SETUP = textwrap.dedent(
    """
    from vendo import Kernel, Principal
    from vendo_auth_apikeys.service import ApiKeys
    k = Kernel().load()
    with k.session() as s:
        user = k.identity.create_user(s, "bench@example.com")
        workspace = k.identity.create_workspace(s, user.id, "Bench").id
        principal = Principal(subject=user.id, method="session:password", scopes=frozenset({"*"}))
        _row, key = ApiKeys(k, k.plugin_settings("auth-apikeys")).create(s, principal, workspace, name="bench",
                                                                          scopes=["ai"])
        print(key)
    """
)

#: ``vendo-limited``: the same plan with finite quotas (never reached in a run), so each call
#: takes and commits holds on its three meters.
LIMITED_CATALOG = CATALOG.replace(
    'features = { ai_chat = "unlimited", ai_tokens = "unlimited", ai_spend = "unlimited" }',
    "features = { ai_chat = 100000000, ai_tokens = 1000000000000, ai_spend = 1000000000000 }")
REPO = Path(__file__).resolve().parents[1]
GATEWAY_BENCH = REPO.parent / "shared" / "tools" / "gateway-bench"
UPSTREAM_KEY = "sk-gwbench-upstream"  # run_anchor.sh's upstream accepts only this key

MESSAGES = [{"role": "user", "content": "Say hello to Ada Lovelace and Charles Babbage"}]


def _has_content(data: str) -> bool:
    choices = json.loads(data).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def measure_httpx(url: str, headers: dict[str, str], n: int, warmup: int, stream: bool) -> tuple[list[float], list[float]]:
    """Sequential requests on one connection: (total ms, first content chunk ms)."""
    body = {"model": "bench-chat", "messages": MESSAGES, "stream": stream}
    totals, firsts = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        for index in range(warmup + n):
            start = time.perf_counter()
            first = None
            if stream:
                async with client.stream("POST", url, headers=headers, json=body) as response:
                    if response.status_code != 200:
                        raise SystemExit(f"{url}: {response.status_code} {await response.aread()!r}")
                    async for line in response.aiter_lines():
                        if first is None and line.startswith("data: {") and _has_content(line[6:]):
                            first = time.perf_counter()
            else:
                response = await client.post(url, headers=headers, json=body)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: {response.status_code} {response.text}")
                json.loads(response.content)
            end = time.perf_counter()
            if index >= warmup:
                totals.append((end - start) * 1000)
                if first is not None:
                    firsts.append((first - start) * 1000)
    return totals, firsts


async def measure_litellm(base: str, n: int, warmup: int, stream: bool) -> tuple[list[float], list[float]]:
    """The same calls through litellm in this process (the baseline)."""
    import litellm

    totals, firsts = [], []
    for index in range(warmup + n):
        start = time.perf_counter()
        first = None
        if stream:
            response = await litellm.acompletion(model="openai/loopback-chat", messages=MESSAGES, api_base=base,
                                                 api_key="sk-bench-operator", stream=True,
                                                 stream_options={"include_usage": True})
            async for chunk in response:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter()
        else:
            await litellm.acompletion(model="openai/loopback-chat", messages=MESSAGES, api_base=base,
                                      api_key="sk-bench-operator")
        end = time.perf_counter()
        if index >= warmup:
            totals.append((end - start) * 1000)
            if first is not None:
                firsts.append((first - start) * 1000)
    return totals, firsts


def _start_vendo(work: Path, name: str, catalog: str, up_port: int, source: Path | None) -> tuple[subprocess.Popen, int, str]:
    """A `vendo serve` worker with its own data directory, catalog and API key, reaching the
    upstream on ``up_port``; ``source``: another tree's ``core/src`` and ``plugins/*/src``."""
    home = work / name
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_")}
    env.update({"VENDO_DATA_DIR": str(home / "data"), "VENDO_LOG_LEVEL": "WARNING",
                "PYTHONPYCACHEPREFIX": str(home / "pycache"), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "VENDO_SECRET_KEY": "bench-ai-gateway-master-secret-0123456789"})
    if source is not None:
        paths = [source / "core" / "src", *sorted((source / "plugins").glob("*/src"))]
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    (home / "catalog.toml").write_text(catalog)
    (home / "vendo.toml").write_text(CONFIG.format(port=up_port).replace("sk-bench-operator", UPSTREAM_KEY))
    for args in (("db", "upgrade"), ("plans", "load", str(home / "catalog.toml"))):
        subprocess.run([sys.executable, "-m", "vendo", *args], env=env, cwd=home, check=True, capture_output=True)
    key = subprocess.run([sys.executable, "-c", SETUP], env=env, cwd=home, check=True, capture_output=True,
                         text=True).stdout.split()[-1]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vendo", "serve", "--port", str(port)], env=env, cwd=home,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/api/health", server, timeout=90)
    return server, port, key


def gateway_bench(args: argparse.Namespace) -> None:
    """Vendo beside LiteLLM's proxy through gateway-bench's run_anchor.sh (see the docstring)."""
    if not (GATEWAY_BENCH / "run_anchor.sh").exists():
        raise SystemExit(f"gateway-bench not found at {GATEWAY_BENCH}")
    work = Path(tempfile.mkdtemp(prefix="vendo-gwbench-ai-"))
    up_port, proxy_port = free_port(), free_port()
    targets = [("vendo", CATALOG, None), ("vendo-limited", LIMITED_CATALOG, None)]
    if args.before:
        source = work / "before-src"
        source.mkdir()
        archive = subprocess.run(["git", "archive", args.before, "core/src", "plugins"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
        revision = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=REPO, check=True,
                                  capture_output=True, text=True).stdout.strip()
        targets.insert(0, ("vendo-before", CATALOG, source))
    servers: list[subprocess.Popen] = []
    extra, pids = [], []
    try:
        for name, catalog, source in targets:
            server, port, key = _start_vendo(work, name, catalog, up_port, source)
            servers.append(server)
            extra.append(f"{name} http://127.0.0.1:{port}/v1 {key} bench-chat")
            pids.append(f"{name}={server.pid}")
        results = work / "results"
        env = {**os.environ, "UP_PORT": str(up_port), "PROXY_PORT": str(proxy_port),
               "GWB_WORK": os.environ.get("GWB_WORK", str(Path(tempfile.gettempdir()) / "gwbench")),
               "GWB_RESULTS": str(results), "GWB_EXTRA_TARGETS": ";".join(extra), "GWB_EXTRA_PIDS": " ".join(pids),
               "N": str(args.n), "WARMUP": str(max(args.n // 10, 5)), "ROUNDS": str(args.rounds),
               "DURATION": str(args.duration)}
        subprocess.run(["bash", str(GATEWAY_BENCH / "run_anchor.sh"), *(["--quick"] if args.quick else [])],
                       env=env, check=False)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=20)
    found = sorted(results.glob("anchor-*.md"))
    if not found:
        raise SystemExit("gateway-bench wrote no results")
    stamp = found[-1].stem.removeprefix("anchor-")
    out = REPO / "benchmarks" / "results" / f"gateway-bench-ai-{stamp}"
    note = (f"\n- vendo targets (1 `vendo serve` worker each, SQLite, vendo-ai-litellm + vendo-auth-apikeys, "
            f"model bench-chat on the OpenAI-wire direct path): `vendo` = this tree (AI meters without limits), "
            f"`vendo-limited` = this tree with finite quotas (holds taken and committed on every call)"
            + (f", `vendo-before` = {revision}" if args.before else "") + "\n")
    text = found[-1].read_text()
    head, sep, rest = text.partition("\n\n```yaml")
    out.with_suffix(".md").write_text(head + note + sep + rest)
    (out.with_suffix(".json")).write_text(found[-1].with_suffix(".json").read_text())
    print(f"results: {out}.md / .json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("-n", type=int, default=None, help="timed requests per case (default 300; 200 with --gateway-bench)")
    parser.add_argument("--gateway-bench", action="store_true", help="Vendo beside LiteLLM's proxy (gateway-bench)")
    parser.add_argument("--before", help="with --gateway-bench: also measure this git revision as vendo-before")
    parser.add_argument("--rounds", type=int, default=2, help="with --gateway-bench: rounds (best kept)")
    parser.add_argument("--duration", type=float, default=5.0, help="with --gateway-bench: throughput seconds")
    args = parser.parse_args()
    if args.gateway_bench:
        args.n = args.n or 200
        gateway_bench(args)
        return
    args.n = args.n or 300
    n, warmup = (20, 5) if args.quick else (args.n, 30)

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    work = Path(tempfile.mkdtemp(prefix="vendo-bench-ai-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_")}
    env.update({"VENDO_DATA_DIR": str(work / "data"), "VENDO_LOG_LEVEL": "WARNING",
                "PYTHONPYCACHEPREFIX": str(work / "pycache"), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "VENDO_SECRET_KEY": "bench-ai-gateway-master-secret-0123456789"})
    up_port, vendo_port = free_port(), free_port()
    (work / "catalog.toml").write_text(CATALOG)
    (work / "vendo.toml").write_text(CONFIG.format(port=up_port))
    run = lambda *a: subprocess.run([sys.executable, "-m", "vendo", *a], env=env, cwd=work, check=True,  # noqa: E731
                                    capture_output=True, text=True)
    run("db", "upgrade")
    run("plans", "load", str(work / "catalog.toml"))
    key = subprocess.run([sys.executable, "-c", SETUP], env=env, cwd=work, check=True, capture_output=True,
                         text=True).stdout.split()[-1]

    servers = [
        subprocess.Popen([sys.executable, "-m", "vendo_ai_litellm.upstream", "--port", str(up_port)], env=env,
                         cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "vendo", "serve", "--port", str(vendo_port)], env=env, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    upstream = f"http://127.0.0.1:{up_port}/v1"
    vendo = f"http://127.0.0.1:{vendo_port}/v1"
    results: dict[str, tuple[list[float], list[float]]] = {}
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/v1/models", servers[0], timeout=90)
        wait_ready(f"http://127.0.0.1:{vendo_port}/api/health", servers[1], timeout=90)
        headers = {"Authorization": f"Bearer {key}"}
        for stream in (False, True):
            label = "stream" if stream else "plain"
            results[f"raw httpx -> upstream ({label})"] = asyncio.run(
                measure_httpx(f"{upstream}/chat/completions", {}, n, warmup, stream))
            results[f"litellm -> upstream ({label})"] = asyncio.run(measure_litellm(upstream, n, warmup, stream))
            results[f"vendo gateway ({label})"] = asyncio.run(
                measure_httpx(f"{vendo}/chat/completions", headers, n, warmup, stream))
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=20)

    print(f"AI gateway latency, sequential, {n} requests per case after {warmup} warm-up"
          + (", quick (figures meaningless)" if args.quick else ""))
    print(f"{'case':38} {'p50 ms':>8} {'p99 ms':>8} {'TTFT p50':>9} {'TTFT p99':>9}")
    for name, (totals, firsts) in results.items():
        p50, p99 = percentiles(totals)
        t50, t99 = percentiles(firsts) if firsts else (float("nan"), float("nan"))
        print(f"{name:38} {p50:8.2f} {p99:8.2f} {t50:9.2f} {t99:9.2f}")
    print()
    print(f"{'added by vendo over litellm':38} {'p50 ms':>8} {'p99 ms':>8} {'TTFT p50':>9} {'ratio p50':>10}")
    for label in ("plain", "stream"):
        base, gateway = results[f"litellm -> upstream ({label})"], results[f"vendo gateway ({label})"]
        b50, b99 = percentiles(base[0])
        g50, g99 = percentiles(gateway[0])
        ttft = (percentiles(gateway[1])[0] - percentiles(base[1])[0]) if base[1] and gateway[1] else float("nan")
        print(f"{label:38} {g50 - b50:8.2f} {g99 - b99:8.2f} {ttft:9.2f} {g50 / b50:10.2f}")
    print("ratio = vendo gateway p50 / litellm direct p50 (both reach the same upstream through litellm)")


if __name__ == "__main__":
    main()

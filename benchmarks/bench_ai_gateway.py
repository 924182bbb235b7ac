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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("-n", type=int, default=300, help="timed requests per case")
    args = parser.parse_args()
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

"""License verification: the offline client against a raw PyNaCl verify of the same
signature, then ``POST /api/v1/licenses/validate`` over HTTP on one `vendo serve` worker.

Offline, in this process, best of ``--repeat`` loops, the cases taking turns:

- ``raw PyNaCl verify``: ``VerifyKey.verify(signed bytes, signature)`` on the key's own
  signature, bytes already split (the baseline: what a signature costs);
- ``client Verifier.verify(key)``: what an app calls at every gated use of its stored key:
  the signature, clock, revocation, machine and expiry checks (the key's decoding, a pure
  function of its text, is remembered by the verifier after the first call);
- ``client, decoding every call``: the same with ``cache_size=0``: base64 and JSON decoding
  and claim validation on every call too (a key seen for the first time);
- ``client + license file``: the same plus the machine-bound license file's envelope and
  signature (two signatures: expect about half the raw rate).

The goal is a client rate of at least 80% of the raw rate (printed as "% of raw").

Over HTTP: the plugin's validate route (the signature, then one SELECT of the license, its
revocation and its activation count) against a trivial FastAPI endpoint served by uvicorn in
the same run, each one worker, CONCURRENCY connections from wrk (1 thread) when it is installed,
else from an httpx client in this process (client-bound: the ratio then understates the cost).
Load generator and servers share the machine's cores.

    uv run python benchmarks/bench_license_verify.py            # ~30 s
    uv run python benchmarks/bench_license_verify.py --quick    # smoke run, figures meaningless
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http_consume import free_port, load, wait_ready, wrk_load  # noqa: E402

TRIVIAL_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/api/v1/licenses/validate")
    async def validate() -> dict:
        return {"valid": True, "code": "valid"}
    """
)


def best_rates(cases: list[tuple[str, Callable[[], Any]]], calls: int, repeat: int) -> list[tuple[str, float]]:
    """Calls per second of each case, best of ``repeat`` timed loops of ``calls`` calls. The
    cases take turns within each repeat, so a burst of load elsewhere on the machine hits
    them alike instead of skewing one of them."""
    best = {name: float("inf") for name, _ in cases}
    for _ in range(repeat):
        for name, function in cases:
            start = time.perf_counter()
            for _ in range(calls):
                function()
            best[name] = min(best[name], time.perf_counter() - start)
    return [(name, calls / best[name]) for name, _ in cases]


def offline(calls: int, repeat: int) -> list[tuple[str, float]]:
    """The offline rates, raw first."""
    from nacl.signing import SigningKey

    from vendo_license_client import Verifier
    from vendo_license_client.format import (LICENSE_FILE, KeyClaims, armor, b64url, canonical_json,
                                             envelope_fields, key_signing_input, to_timestamp)

    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    signer, kid = SigningKey.generate(), "kbench00001"
    claims = KeyClaims(license_id="lic_0123456789abcdef0123", kid=kid, product="qoredb", email="ada@example.com",
                       tier="pro", features=("sandbox", "visual_diff", "er_diagram", "advanced_audit", "ai_byok"),
                       issued_at=now - timedelta(days=1), expires_at=now + timedelta(days=365), max_machines=3,
                       grace_seconds=259200)
    signed = key_signing_input(canonical_json(claims.to_payload()))
    signature = signer.sign(signed).signature
    key = signed.decode() + "." + b64url(signature)
    data = {"v": 1, "type": "license_file", "license_id": claims.license_id, "product": "qoredb", "tier": "pro",
            "plan": "pro", "email": "ada@example.com", "machine": "m-1", "quotas": [],
            "features": {name: {"enabled": True, "limit": None, "period": None} for name in claims.features},
            "iat": to_timestamp(now), "exp": to_timestamp(now + timedelta(days=7)),
            "license_exp": to_timestamp(claims.expires_at), "perpetual": False, "grace": 259200, "max_machines": 3}
    envelope, file_input = envelope_fields(LICENSE_FILE, kid, data)
    envelope["sig"] = base64.b64encode(signer.sign(file_input).signature).decode()
    license_file = armor(LICENSE_FILE, envelope)

    verifier = Verifier({kid: bytes(signer.verify_key)})
    cold = Verifier({kid: bytes(signer.verify_key)}, cache_size=0)
    verify_key = signer.verify_key
    assert verifier.verify(key, now=now).valid and cold.verify(key, now=now).valid
    forged = key[:-3] + ("A" if key[-3] != "A" else "B") + key[-2:]
    assert verifier.verify(forged, now=now).code == "malformed_key"  # the signature is checked on every call
    assert verifier.verify(key, machine="m-1", license_file=license_file, now=now).valid
    revoked: frozenset[str] = frozenset({"lic_other"})
    return best_rates([
        ("raw PyNaCl verify", lambda: verify_key.verify(signed, signature)),
        ("client Verifier.verify(key)", lambda: verifier.verify(key, machine="m-1", revoked=revoked, now=now)),
        ("client, decoding every call", lambda: cold.verify(key, machine="m-1", revoked=revoked, now=now)),
        ("client + license file", lambda: verifier.verify(key, machine="m-1", license_file=license_file,
                                                          revoked=revoked, now=now)),
    ], calls, repeat)


def http(seconds: float, concurrency: int, client: str) -> tuple[dict[str, float], dict[str, str]]:
    """Requests per second (and wrk's p50 / p99) of the trivial endpoint and of the validate route."""
    work = Path(tempfile.mkdtemp(prefix="vendo-bench-license-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_")}
    env.update({"VENDO_DATA_DIR": str(work / "data"), "VENDO_LOG_LEVEL": "WARNING",
                "VENDO_SECRET_KEY": "benchmark-master-secret-0123456789abcdefghij",
                "VENDO_PLUGINS__ENABLED": '["license-ed25519"]', "PYTHONPYCACHEPREFIX": str(work / "pycache")})
    (work / "trivial.py").write_text(TRIVIAL_APP)
    run = lambda *a: subprocess.run([sys.executable, "-m", "vendo", *a], env=env, cwd=work, check=True,  # noqa: E731
                                    capture_output=True, text=True).stdout
    run("db", "upgrade")
    run("license", "keygen")
    key = run("license", "issue", "--email", "bench@example.com", "--tier", "pro", "-f", "er_diagram",
              "--key-only").strip()
    vendo_port, trivial_port = free_port(), free_port()
    servers = [
        subprocess.Popen([sys.executable, "-m", "vendo", "serve", "--port", str(vendo_port)], env=env, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "uvicorn", "trivial:app", "--port", str(trivial_port),
                          "--loop", "auto", "--http", "auto", "--log-level", "warning"], env=env, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    results, latencies = {}, {}
    try:
        wait_ready(f"http://127.0.0.1:{vendo_port}/api/health", servers[0])
        wait_ready(f"http://127.0.0.1:{trivial_port}/docs", servers[1])
        body = {"key": key, "machine": "m-1"}
        cases = [("trivial FastAPI endpoint", f"http://127.0.0.1:{trivial_port}/api/v1/licenses/validate"),
                 ("vendo POST licenses/validate", f"http://127.0.0.1:{vendo_port}/api/v1/licenses/validate")]
        for name, url in cases:
            asyncio.run(load(url, {}, body, min(1.0, seconds), concurrency))  # warm-up
            if client == "wrk":
                results[name], failed, latencies[name] = wrk_load(url, {}, body, seconds, concurrency, work)
            else:
                ok, failed = asyncio.run(load(url, {}, body, seconds, concurrency))
                results[name], latencies[name] = ok / seconds, "-"
            if failed:
                raise SystemExit(f"{name}: {failed} failed requests")
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=20)
    return results, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-http", action="store_true", help="only the offline part")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                        help="HTTP load generator: wrk when installed (auto), or the httpx fallback")
    args = parser.parse_args()
    calls, repeat = (200, 1) if args.quick else (args.calls, args.repeat)
    seconds = 1.0 if args.quick else args.seconds

    rates = offline(calls, repeat)
    raw = rates[0][1]
    print(f"Offline verification, best of {repeat} x {calls} calls" + (", quick (figures meaningless)"
                                                                      if args.quick else ""))
    print(f"{'case':32} {'verifies/s':>12} {'us/call':>9} {'% of raw':>9}")
    for name, rate in rates:
        print(f"{name:32} {rate:12,.0f} {1e6 / rate:9.1f} {100 * rate / raw:8.0f}%")
    client, decoding = rates[1][1], rates[2][1]
    print(f"ratio client/raw = {client / raw:.2f} (goal >= 0.80); decoding every call: {decoding / raw:.2f}")

    if args.no_http:
        return
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    elif client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("error: wrk is not on the PATH (apt-get install wrk)")
    results, latencies = http(seconds, args.concurrency, client)
    baseline = results["trivial FastAPI endpoint"]
    print()
    print(f"HTTP validate, 1 worker each, {args.concurrency} concurrent requests, {seconds:.0f} s per case")
    print("load generator: " + ("wrk, 1 thread" if client == "wrk" else
                                "httpx in this process (wrk not found or not chosen): client-bound, "
                                "the ratio understates Vendo's cost"))
    print(f"{'case':32} {'req/s':>10} {'p50 / p99':>20} {'ratio vs trivial':>18}")
    for name, rate in results.items():
        print(f"{name:32} {rate:10,.0f} {latencies[name]:>20} {baseline / rate:18.1f}")
    print("ratio = trivial endpoint's req/s / this case's req/s (higher is slower)")


if __name__ == "__main__":
    main()

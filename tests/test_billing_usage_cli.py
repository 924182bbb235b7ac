"""`vendo billing report-usage` in a real process, on the embedded default (SQLite, the local
provider): usage recorded by the app is pushed once, `--status` shows what is billed, and a
mistake is one readable line with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

from support import run_vendo, vendo_env

CATALOG = Path(__file__).resolve().parents[1] / "examples" / "catalogs" / "metered-api.toml"


def _track(subject: str, amount: int) -> None:
    """Usage recorded by the app, in this process, on the same database as the commands."""
    from vendo import Kernel, load_settings

    kernel = Kernel(load_settings())
    kernel.load()
    kernel.providers.configure(kernel.settings.providers)
    try:
        kernel.entitlements.track(subject, "api_calls", amount)
    finally:
        kernel.close()


def test_report_usage_pushes_recorded_usage_once() -> None:
    env = vendo_env()
    assert run_vendo("db", "upgrade", env=env).returncode == 0
    assert run_vendo("plans", "load", str(CATALOG), env=env).returncode == 0
    shown = run_vendo("plans", "show", env=env)
    assert "metered: Metered - 29.00 EUR/month + 0.002 EUR per api_calls (monthly, in arrears), 14-day trial" in shown.stdout
    assert run_vendo("billing", "assign", "ws_meter", "metered", env=env).returncode == 0
    assert run_vendo("billing", "report-usage", "--status", env=env).stdout.strip() == "no usage-based subscriptions"

    _track("ws_meter", 250)
    first = run_vendo("billing", "report-usage", env=env)
    assert first.returncode == 0, first.stderr
    line, total = first.stdout.strip().splitlines()
    assert line.startswith("ws_meter lsub_") and line.endswith("api_calls: 250 unit(s) reported")
    assert total == "1 usage report(s) sent"
    assert run_vendo("billing", "report-usage", env=env).stdout.strip() == "0 usage report(s) sent"
    (row,) = json.loads(run_vendo("billing", "report-usage", "--status", "--json", env=env).stdout)
    assert (row["subject"], row["feature"], row["billed_units"], row["pending_units"]) == (
        "ws_meter", "api_calls", 250, None)

    mistake = run_vendo("billing", "report-usage", "--subject", env=env)
    assert mistake.returncode != 0 and "Traceback" not in mistake.stderr

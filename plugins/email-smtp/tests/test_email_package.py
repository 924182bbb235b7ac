"""The package as a whole: `vendo-sdk check` accepts it, and it is found by its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def test_vendo_sdk_check_passes() -> None:
    executable = Path(sys.executable).with_name("vendo-sdk")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "vendo_sdk.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    done = subprocess.run([*command, "check", str(PACKAGE)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.startswith("ok: vendo-email-smtp 0.1.0:"), done.stdout


def test_entry_point_and_templates_ship_with_the_package() -> None:
    from importlib.metadata import entry_points

    [entry] = [e for e in entry_points(group="vendo.plugins") if e.name == "email-smtp"]
    assert entry.value == "vendo_email_smtp"
    shipped = {p.name for p in (PACKAGE / "src" / "vendo_email_smtp" / "templates").iterdir()}
    for name in ("license_key", "invitation", "password_reset", "payment_failed"):
        assert {f"{name}.subject", f"{name}.txt", f"{name}.html"} <= shipped

"""The package as a whole: `vendo-sdk check` passes, and the entry point loads the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import vendo_counters_redis

PACKAGE = Path(__file__).resolve().parents[1]


def test_vendo_sdk_check_passes() -> None:
    executable = Path(sys.executable).with_name("vendo-sdk")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "vendo_sdk.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    done = subprocess.run([*command, "check", str(PACKAGE)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.startswith("ok: vendo-counters-redis 0.1.0:"), done.stdout


def test_the_entry_point_names_the_plugin() -> None:
    (point,) = [p for p in entry_points(group="vendo.plugins") if p.name == "counters-redis"]
    assert point.load() is vendo_counters_redis and vendo_counters_redis.vendo_api == ">=1.0,<2"

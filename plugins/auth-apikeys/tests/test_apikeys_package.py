"""The package as a whole: `vendo-sdk check`, its Alembic branch, its models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from vendo.db import migrations

PACKAGE = Path(__file__).resolve().parents[1]
TABLE = "auth_apikeys_keys"


def test_vendo_sdk_check_passes() -> None:
    executable = Path(sys.executable).with_name("vendo-sdk")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "vendo_sdk.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    done = subprocess.run([*command, "check", str(PACKAGE)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.startswith("ok: vendo-auth-apikeys 0.1.0:"), done.stdout


def test_the_branch_upgrades_after_the_kernel_and_downgrades_alone(make_kernel) -> None:
    kernel = make_kernel()
    with kernel.engine.connect() as connection:
        status = migrations.status(kernel, connection)
        assert TABLE in sa.inspect(connection).get_table_names()
    assert status.up_to_date and "auth_apikeys_0001" in status.current

    migrations.downgrade(kernel, "auth-apikeys@base")
    with kernel.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        behind = migrations.status(kernel, connection)
    assert TABLE not in tables and "vendo_users" in tables  # the kernel's tables stay
    assert not behind.up_to_date and "auth_apikeys_0001" in behind.describe()
    assert migrations.upgrade(kernel).up_to_date


def test_the_model_matches_its_migration(make_kernel) -> None:
    """No autogenerate difference between ``ApiKey`` and revision ``auth_apikeys_0001``."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vendo import Model

    kernel = make_kernel()

    def ours(obj, name, type_, reflected, compare_to):
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name == TABLE

    with kernel.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": ours})
        assert compare_metadata(context, Model.metadata) == []

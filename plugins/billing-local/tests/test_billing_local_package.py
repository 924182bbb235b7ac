"""The package as a whole: `vendo-sdk check`, its Alembic branch, its models (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from vendo.db import migrations

PACKAGE = Path(__file__).resolve().parents[1]
TABLES = {"billing_local_customers", "billing_local_checkouts", "billing_local_subscriptions",
          "billing_local_invoices", "billing_local_prices", "billing_local_usage", "billing_local_portals",
          "billing_local_refunds"}


def test_vendo_sdk_check_passes() -> None:
    executable = Path(sys.executable).with_name("vendo-sdk")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "vendo_sdk.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    done = subprocess.run([*command, "check", str(PACKAGE)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.startswith("ok: vendo-billing-local 0.1.0:"), done.stdout


def test_the_branch_upgrades_after_the_kernel_and_downgrades_alone(world) -> None:
    kernel = world.kernel
    with kernel.engine.connect() as connection:
        status = migrations.status(kernel, connection)
        assert TABLES <= set(sa.inspect(connection).get_table_names())
    assert status.up_to_date and "billing_local_0004" in status.current
    migrations.downgrade(kernel, "billing-local@base")
    with kernel.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    assert not tables & TABLES and "vendo_billing_subscriptions" in tables
    assert migrations.upgrade(kernel).up_to_date


def test_the_models_match_their_migration(world) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vendo import Model

    def ours(obj, name, type_, reflected, compare_to):
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in TABLES

    with world.kernel.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": ours,
                                                               "version_table": migrations.VERSION_TABLE})
        assert compare_metadata(context, Model.metadata) == []

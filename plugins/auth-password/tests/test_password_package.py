"""The package itself: the SDK's checker, its Alembic branch and its models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

PACKAGE = Path(__file__).resolve().parents[1]
TABLES = {"auth_password_credentials", "auth_password_tokens", "auth_password_recovery_codes",
          "auth_password_attempts"}


def test_the_sdk_checker_passes():
    result = subprocess.run([sys.executable, "-m", "vendo_sdk.cli", "check", str(PACKAGE)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: vendo-auth-password")


def test_plugin_loads_with_its_hooks(kernel):
    info = kernel.plugin("auth-password")
    assert info.status == "ok", info.error
    assert {"vendo_settings_model", "vendo_migrations", "vendo_register_routes", "vendo_register_authenticators",
            "vendo_export_user_data", "vendo_erase_user_data", "vendo_revoke_user_credentials"} <= set(info.hooks)
    paths = {route.path for _plugin, router, prefix in kernel.routes for route in router.routes
             if _plugin == "auth-password"}
    assert paths == {"/auth/register", "/auth/login", "/auth/password/change", "/auth/password/forgot",
                     "/auth/password/reset", "/auth/email/verify/request", "/auth/email/verify", "/auth/2fa/setup",
                     "/auth/2fa/enable", "/auth/2fa/disable"}
    assert kernel.providers.registered("auth") and not any(
        r.plugin == "auth-password" for r in kernel.providers.registered("auth"))  # Basic auth is opt-in


def test_branch_is_applied_and_current(kernel):
    status = kernel.check_database()
    assert status.up_to_date and "auth_password_0001" in status.current
    assert TABLES <= set(inspect(kernel.engine).get_table_names())


def test_models_match_the_migration(kernel):
    """The ORM models and the plugin's revision describe the same schema (no autogenerate diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from vendo import Model

    def ours(obj, name, type_, reflected, compare_to):
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in TABLES

    with kernel.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "version_table": "vendo_alembic_version", "include_object": ours})
        assert compare_metadata(context, Model.metadata) == []


def test_branch_downgrades_alone(kernel):
    from vendo.db import migrations

    migrations.downgrade(kernel, "auth-password@base")
    names = set(inspect(kernel.engine).get_table_names())
    assert not TABLES & names and "vendo_users" in names
    assert migrations.upgrade(kernel).up_to_date

"""Storage and migrations: what an operator sees from ``vendo db upgrade`` and start-up checks.

Tests taking ``database_url`` run on SQLite and on PostgreSQL (a schema of their own).
"""

from __future__ import annotations

import sqlite3
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError

from vendo import ConfigError, DatabaseError, StartupError
from vendo.db import Model, UTCDateTime, make_engine, migrations
from vendo.kernel import Kernel

KERNEL_TABLES = {"vendo_outbox_events", "vendo_outbox_deliveries", "vendo_users", "vendo_workspaces",
                 "vendo_memberships", "vendo_invitations", "vendo_refresh_tokens", "vendo_audit_log",
                 "vendo_catalog_versions", "vendo_plan_assignments", "vendo_usage_counters", "vendo_usage_ledger",
                 "vendo_usage_holds", "vendo_billing_customers", "vendo_billing_subscriptions",
                 "vendo_billing_events", "vendo_billing_invoices", "vendo_billing_prices", "vendo_billing_checkouts",
                 "vendo_ai_credentials", "vendo_ai_key_budgets"}
KERNEL_HEAD = "vendo_0009"

PLUGIN_REVISION = textwrap.dedent(
    '''
    """myplugin: widgets.

    Revision ID: myplugin_0001
    """
    import sqlalchemy as sa
    from alembic import op

    revision = "myplugin_0001"
    down_revision = None
    branch_labels = ("myplugin",)
    depends_on = "vendo_0001"


    def upgrade():
        op.create_table(
            "myplugin_widgets",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
        )


    def downgrade():
        op.drop_table("myplugin_widgets")
    '''
)


class MigratingPlugin:
    """A plugin shipping its own Alembic branch through ``vendo_migrations``."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = directory

    def vendo_migrations(self) -> Path | str:
        return self.directory


@pytest.fixture
def plugin_migrations(tmp_path: Path) -> Path:
    """A directory holding the plugin's first revision (depends on the kernel's)."""
    directory = tmp_path / "myplugin_migrations"
    directory.mkdir()
    (directory / "myplugin_0001_widgets.py").write_text(PLUGIN_REVISION)
    return directory


def tables(kernel: Kernel) -> set[str]:
    with kernel.engine.connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def version_rows(kernel: Kernel) -> set[str]:
    with kernel.engine.connect() as connection:
        return set(connection.execute(sa.text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).scalars())


# -- upgrade and the start-up check ------------------------------------------------------


def test_upgrade_creates_kernel_tables_and_check_passes(make_kernel, database_url):
    """``vendo db upgrade`` creates the kernel's tables; the start-up check then passes."""
    kernel = make_kernel(database_url=database_url).load()
    kernel.prepare_storage()
    status = migrations.upgrade(kernel)

    assert status.up_to_date
    assert status.current == (KERNEL_HEAD,) and status.unknown == ()
    assert KERNEL_TABLES | {migrations.VERSION_TABLE} <= tables(kernel)
    checked = kernel.check_database()
    assert checked.up_to_date and checked.current == (KERNEL_HEAD,)
    assert "current migrations" in checked.describe()


def test_upgrade_twice_is_harmless(make_kernel, database_url):
    kernel = make_kernel(database_url=database_url).load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)
    assert migrations.upgrade(kernel).up_to_date
    assert version_rows(kernel) == {KERNEL_HEAD}
    kernel.check_database()


def test_kernel_models_match_their_migration(migrated_kernel):
    """The ORM models and the Alembic revisions describe the same schema (no autogenerate diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    kernel = migrated_kernel()

    def kernel_only(obj, name, type_, reflected, compare_to):  # plugins' tests may add models
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in KERNEL_TABLES

    with kernel.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "version_table": migrations.VERSION_TABLE, "include_object": kernel_only},
        )
        assert compare_metadata(context, Model.metadata) == []


def test_missing_sqlite_file_is_refused_with_the_fix(make_kernel, tmp_path):
    """Without a database file, start-up says to run ``vendo db upgrade``, and creates nothing."""
    path = tmp_path / "nowhere" / "vendo.db"
    kernel = make_kernel(database_url=f"sqlite:///{path}").load()
    with pytest.raises(DatabaseError) as caught:
        kernel.check_database()
    assert str(path) in caught.value.message
    assert "does not exist" in caught.value.message
    assert "run `vendo db upgrade`" in caught.value.message
    assert caught.value.code == "database_unavailable"
    assert not path.exists() and not path.parent.exists()


def test_default_sqlite_database_missing_is_refused(make_kernel, tmp_path):
    """With no URL configured the default is ``<data_dir>/vendo.db``; missing, it is refused likewise."""
    kernel = make_kernel().load()
    with pytest.raises(DatabaseError, match="run `vendo db upgrade`") as caught:
        kernel.check_database()
    assert str(tmp_path / "data" / "vendo.db") in caught.value.message


def test_empty_database_is_refused_with_the_fix(make_kernel, database_url):
    """An existing but empty database (SQLite file, PostgreSQL schema) is not started on."""
    if database_url.startswith("sqlite"):
        sqlite3.connect(database_url.removeprefix("sqlite:///")).close()
    kernel = make_kernel(database_url=database_url).load()
    with pytest.raises(DatabaseError) as caught:
        kernel.check_database()
    assert caught.value.message == "the database has no Vendo tables yet: run `vendo db upgrade`"


async def test_start_refuses_an_unmigrated_database(make_kernel, database_url):
    """``Kernel.start`` stops with the same readable error instead of failing later on queries."""
    kernel = make_kernel(database_url=database_url)
    kernel.prepare_storage()
    with pytest.raises(DatabaseError, match="vendo db upgrade"):
        await kernel.start()


# -- connection and URL errors ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql"])
async def test_unreachable_postgresql_names_the_masked_url(make_kernel, scheme):
    """A server that does not answer gives an error naming the URL with its password hidden."""
    url = f"{scheme}://vendo:s3cret-pw@127.0.0.1:1/vendo?connect_timeout=5"
    kernel = make_kernel(database_url=url).load()
    with pytest.raises(DatabaseError) as caught:
        kernel.check_database()
    message = caught.value.message
    assert "cannot connect to the database postgresql+psycopg://vendo:***@127.0.0.1:1/vendo" in message
    assert "VENDO_DATABASE_URL" in message
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    with pytest.raises(DatabaseError) as at_start:
        await kernel.start()
    assert "s3cret-pw" not in str(at_start.value)


@pytest.mark.parametrize(
    "url",
    ["not a url", "://", "postgresql+psycopg://vendo:s3cret-pw@127.0.0.1:port/vendo"],
    ids=["words", "empty-scheme", "bad-port"],
)
async def test_malformed_url_is_a_config_error(make_kernel, url):
    """A malformed database URL is a configuration error (with the example to follow),
    wherever it is first used, never a library traceback; a password in it stays hidden."""
    with pytest.raises(ConfigError, match="invalid database URL") as caught:
        make_engine(url)
    assert "sqlite:///path/vendo.db" in caught.value.message
    assert "s3cret-pw" not in caught.value.message

    kernel = make_kernel(database_url=url).load()
    with pytest.raises(ConfigError, match="invalid database URL"):
        kernel.prepare_storage()
    with pytest.raises(ConfigError, match="invalid database URL"):
        kernel.check_database()
    with pytest.raises(StartupError) as at_start:
        await kernel.start()
    assert at_start.value.code == "config_error"
    assert "invalid database URL" in at_start.value.message
    assert "s3cret-pw" not in at_start.value.message


def test_unknown_database_driver_is_a_config_error():
    with pytest.raises(ConfigError, match="no database driver"):
        make_engine("postgresql+nosuchdriver://vendo:s3cret-pw@127.0.0.1/vendo")


# -- plugin migrations ------------------------------------------------------------------------


def test_plugin_migration_is_applied_by_upgrade(make_kernel, database_url, plugin_migrations):
    """A plugin's own Alembic branch is applied with the kernel's, and the start-up check passes."""
    kernel = make_kernel({"myplugin": MigratingPlugin(plugin_migrations)}, database_url=database_url).load()
    kernel.prepare_storage()
    status = migrations.upgrade(kernel)

    assert status.up_to_date, status.describe()
    assert KERNEL_TABLES | {"myplugin_widgets"} <= tables(kernel)
    assert kernel.check_database().up_to_date
    with kernel.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO myplugin_widgets (id, name) VALUES (1, 'gear')"))
        assert connection.execute(sa.text("SELECT name FROM myplugin_widgets")).scalar_one() == "gear"


def test_plugin_migration_check_works_with_older_alembic(
    make_kernel, database_url, plugin_migrations, monkeypatch
):
    """Alembic before 1.18.5 lacks ``get_heads(consider_depends_on=...)``; the check still
    understands that the kernel's head is folded into the plugin's row."""
    from alembic.script import ScriptDirectory

    def old_get_heads(self):  # the signature of Alembic 1.13 to 1.18.4
        return list(self.revision_map.heads)

    monkeypatch.setattr(ScriptDirectory, "get_heads", old_get_heads)
    kernel = make_kernel({"myplugin": MigratingPlugin(plugin_migrations)}, database_url=database_url).load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)
    assert kernel.check_database().up_to_date
    migrations.downgrade(kernel, "myplugin@base")
    with pytest.raises(DatabaseError, match="pending: myplugin_0001"):
        kernel.check_database()


def test_installed_plugin_with_pending_migration_is_refused(
    migrated_kernel, make_kernel, database_url, plugin_migrations
):
    """Installing a plugin on a migrated database: start-up names its pending revision
    until ``vendo db upgrade`` applies it."""
    migrated_kernel()  # the kernel alone, fully migrated
    kernel = make_kernel({"myplugin": MigratingPlugin(str(plugin_migrations))}, database_url=database_url).load()

    with pytest.raises(DatabaseError) as caught:
        kernel.check_database()
    assert "pending: myplugin_0001" in caught.value.message
    assert "run `vendo db upgrade`" in caught.value.message
    assert "myplugin_widgets" not in tables(kernel)

    migrations.upgrade(kernel)
    assert kernel.check_database().up_to_date
    assert "myplugin_widgets" in tables(kernel)


def test_removed_plugin_leaves_an_unknown_revision(make_kernel, database_url, plugin_migrations):
    """A database migrated with a plugin that is no longer installed is reported, not started on."""
    with_plugin = make_kernel({"myplugin": MigratingPlugin(plugin_migrations)}, database_url=database_url).load()
    with_plugin.prepare_storage()
    migrations.upgrade(with_plugin)

    without = make_kernel(database_url=database_url).load()
    with pytest.raises(DatabaseError) as caught:
        without.check_database()
    assert "myplugin_0001" in caught.value.message
    assert "does not know" in caught.value.message


def test_downgrading_a_plugin_branch_keeps_the_kernel_tables(make_kernel, database_url, plugin_migrations):
    """``vendo db downgrade myplugin@base`` reverts only that plugin's revisions."""
    kernel = make_kernel({"myplugin": MigratingPlugin(plugin_migrations)}, database_url=database_url).load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)

    status = migrations.downgrade(kernel, "myplugin@base")
    assert status.current == (KERNEL_HEAD,)
    assert "myplugin_widgets" not in tables(kernel)
    assert KERNEL_TABLES <= tables(kernel)
    with pytest.raises(DatabaseError, match="pending: myplugin_0001"):
        kernel.check_database()


def test_downgrade_to_base_removes_the_tables(make_kernel, database_url, plugin_migrations):
    """``vendo db downgrade base`` drops every table the migrations created; upgrade restores them."""
    kernel = make_kernel({"myplugin": MigratingPlugin(plugin_migrations)}, database_url=database_url).load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)

    status = migrations.downgrade(kernel, "base")
    assert status.current == ()
    assert not (KERNEL_TABLES | {"myplugin_widgets"}) & tables(kernel)
    assert version_rows(kernel) == set()
    with pytest.raises(DatabaseError, match="no Vendo tables yet"):
        kernel.check_database()

    assert migrations.upgrade(kernel).up_to_date
    assert KERNEL_TABLES | {"myplugin_widgets"} <= tables(kernel)


def test_unknown_revision_in_the_database_is_reported(migrated_kernel):
    """A database migrated by a newer install (a revision this one lacks) is refused with why."""
    kernel = migrated_kernel()
    with kernel.engine.begin() as connection:
        connection.execute(
            sa.text(f"INSERT INTO {migrations.VERSION_TABLE} (version_num) VALUES ('zz_future_0099')")
        )
    with kernel.engine.connect() as connection:
        status = migrations.status(kernel, connection)
    assert status.unknown == ("zz_future_0099",)
    assert not status.up_to_date

    with pytest.raises(DatabaseError) as caught:
        kernel.check_database()
    assert "zz_future_0099" in caught.value.message
    assert "does not know" in caught.value.message


# -- UTCDateTime -------------------------------------------------------------------------------


@pytest.fixture
def stamps(make_kernel, database_url) -> tuple[Kernel, sa.Table]:
    """A throwaway table (own metadata, not the shared Model's) with a UTCDateTime column."""
    kernel = make_kernel(database_url=database_url)
    kernel.prepare_storage()
    metadata = sa.MetaData()
    table = sa.Table(
        "utc_stamps", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=True),
    )
    metadata.create_all(kernel.engine)
    return kernel, table


def _session_time_zone(connection: sa.Connection) -> None:
    """Make PostgreSQL answer in a non-UTC zone, as a server configured so would."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SET TIME ZONE 'Asia/Kolkata'"))


AWARE = [
    datetime(2030, 3, 1, 9, 30, 15, 123456, tzinfo=timezone.utc),
    datetime(2030, 3, 1, 15, 0, 15, 654321, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-8))),
]


def test_utc_datetime_round_trips_aware_values(stamps):
    """An aware datetime comes back as the same instant, with microseconds, in UTC."""
    kernel, table = stamps
    with kernel.engine.begin() as connection:
        _session_time_zone(connection)
        connection.execute(table.insert(), [{"id": i, "at": at} for i, at in enumerate(AWARE)] + [{"id": 9, "at": None}])
    with kernel.engine.connect() as connection:
        _session_time_zone(connection)
        rows = dict(connection.execute(sa.select(table.c.id, table.c.at)).all())
    assert rows.pop(9) is None
    for i, original in enumerate(AWARE):
        back = rows[i]
        assert back == original
        assert back.tzinfo is not None and back.utcoffset() == timedelta(0)
        assert back.replace(tzinfo=None) == original.astimezone(timezone.utc).replace(tzinfo=None)


def test_utc_datetime_compares_instants_not_local_times(stamps):
    """Filtering with a non-UTC bound compares instants (SQLite stores UTC text)."""
    kernel, table = stamps
    with kernel.engine.begin() as connection:
        connection.execute(table.insert(), [{"id": i, "at": at} for i, at in enumerate(AWARE)])
        # 10:00 at +05:30 is 04:30 UTC: only the 09:30 UTC stamps of that day are later
        bound = datetime(2030, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        later = connection.execute(sa.select(table.c.id).where(table.c.at > bound).order_by(table.c.id)).scalars()
        assert list(later) == [0, 1]


def test_utc_datetime_rejects_naive_values(stamps):
    """A naive datetime is refused rather than silently taken as UTC (or local time)."""
    kernel, table = stamps
    with pytest.raises(StatementError) as caught:
        with kernel.engine.begin() as connection:
            connection.execute(table.insert(), {"id": 1, "at": datetime(2030, 1, 1, 12, 0)})
    assert isinstance(caught.value.orig, ValueError)
    assert "naive datetime" in str(caught.value)
    with kernel.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0

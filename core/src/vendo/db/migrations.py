"""Alembic migrations of the kernel and of every plugin, one branch each.

The kernel's revisions carry the branch label ``vendo``; each plugin's revisions live in
the directory it returns from ``vendo_migrations`` under its own branch label. The
version table is ``vendo_alembic_version`` so an integrator's own Alembic history can
share the database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from contextlib import contextmanager

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from vendo.kernel import Kernel

VERSION_TABLE = "vendo_alembic_version"
SCRIPT_LOCATION = Path(__file__).parent / "alembic"
KERNEL_VERSIONS = SCRIPT_LOCATION / "versions"


@dataclass(frozen=True)
class MigrationStatus:
    """Where the database stands against the revisions this install ships."""

    current: tuple[str, ...]
    heads: tuple[str, ...]
    unknown: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        """True when every branch is at its head."""
        return not self.unknown and set(self.current) == set(self.heads)

    def describe(self) -> str:
        """One sentence for people: current, behind (what to run) or ahead."""
        if self.unknown:
            return (
                f"the database is at revision(s) {', '.join(self.unknown)} that this install does not know "
                "(a newer Vendo or a removed plugin migrated it): install the matching versions"
            )
        if not self.current:
            return "the database has no Vendo tables yet: run `vendo db upgrade`"
        if not self.up_to_date:
            missing = sorted(set(self.heads) - set(self.current))
            return f"the database is behind its migrations (pending: {', '.join(missing)}): run `vendo db upgrade`"
        return "the database is at its current migrations"


def version_locations(kernel: Kernel) -> list[Path]:
    """The kernel's revision directory followed by each plugin's."""
    locations = [KERNEL_VERSIONS]
    for _plugin, directory in kernel.hooks.migrations():
        path = Path(directory)
        if path not in locations:
            locations.append(path)
    return locations


@contextmanager
def alembic_config(kernel: Kernel, connection: Connection) -> Iterator[Config]:
    """An Alembic configuration bound to ``connection`` (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in version_locations(kernel)))
    config.attributes["connection"] = connection
    yield config


def _recorded_heads(script: ScriptDirectory) -> list[str]:
    """The heads the version table holds once every branch is upgraded.

    A head that another revision ``depends_on`` (the kernel's, below each plugin's first
    revision) is folded into its dependant's row by Alembic, so it is left out here.
    """
    try:
        return list(script.get_heads(consider_depends_on=True))
    except TypeError:  # Alembic < 1.18.5 has the same list, without the argument
        return list(script.revision_map._real_heads)


def status(kernel: Kernel, connection: Connection) -> MigrationStatus:
    """Compare the database's recorded revisions with the heads of every branch."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with alembic_config(kernel, connection) as config:
        script = ScriptDirectory.from_config(config)
        heads = tuple(sorted(_recorded_heads(script)))
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        current = tuple(sorted(context.get_current_heads()))
        known = {rev.revision for rev in script.walk_revisions()}
    return MigrationStatus(current, heads, tuple(r for r in current if r not in known))


def upgrade(kernel: Kernel, target: str = "heads") -> MigrationStatus:
    """Apply migrations up to ``target`` (every branch's head by default)."""
    from alembic import command

    with kernel.engine.begin() as connection, alembic_config(kernel, connection) as config:
        command.upgrade(config, target)
    with kernel.engine.connect() as connection:
        return status(kernel, connection)


def downgrade(kernel: Kernel, target: str) -> MigrationStatus:
    """Revert migrations down to ``target`` (e.g. ``base``, ``vendo@-1``, a revision id)."""
    from alembic import command

    with kernel.engine.begin() as connection, alembic_config(kernel, connection) as config:
        command.downgrade(config, target)
    with kernel.engine.connect() as connection:
        return status(kernel, connection)

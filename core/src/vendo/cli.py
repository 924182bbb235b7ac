"""The ``vendo`` command line.

Plugins are not loaded when this module is imported, nor for ``vendo --help``'s kernel
commands: they load when a command needs them, and a broken plugin is reported, never
fatal (unless ``plugins.strict``). Every error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

try:  # typer vendors its own click from 0.24 on
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as click_exceptions

from vendo._version import API_VERSION, __version__
from vendo.errors import ConfigError, VendoError

_state: dict[str, Any] = {"config": None, "kernel": None}

KERNEL_COMMANDS = ("serve", "plugins", "db", "config", "plans", "usage", "billing")


def cli_kernel() -> Any:
    """The kernel of the running ``vendo`` command, loaded with its plugins.

    Plugin commands call this at run time (never at import) to reach settings, the
    database, the outbox and providers. The database is not checked here: call
    ``kernel.check_database()`` before using it.
    """
    if _state["kernel"] is None:
        from vendo.config import load_settings
        from vendo.kernel import Kernel
        from vendo.logs import configure_logging

        settings = load_settings(_state["config"])
        configure_logging(settings.log_level)
        _state["kernel"] = Kernel(settings).load()
    return _state["kernel"]


class _PluginCommands(TyperGroup):
    """Kernel commands, plus the plugins' commands loaded on first need."""

    def _plugin_commands(self, ctx: Any) -> dict[str, Any]:
        if "plugin_commands" in _state:
            return _state["plugin_commands"]
        _state["config"] = ctx.params.get("config") or _state["config"]
        commands: dict[str, Any] = {}
        try:
            kernel = cli_kernel()
        except VendoError:
            # Broken configuration: kernel commands still work (and report it).
            _state["plugin_commands"] = commands
            return commands
        for plugin, impl in kernel.hooks.implementations("vendo_register_commands"):
            pending: dict[str, Any] = {}

            def register(command: Any, name: str | None = None, _pending: dict = pending) -> None:
                if not isinstance(command, typer.Typer):
                    raise TypeError(f"register() expects a typer.Typer, got {type(command).__name__}")
                click_command = typer.main.get_group(command)
                final = name or command.info.name
                if not final:
                    raise ValueError("the command has no name: pass register(command, name=...)")
                if final in KERNEL_COMMANDS or final in commands or final in _pending:
                    raise ValueError(f"command name '{final}' is already taken")
                _pending[final] = click_command

            try:
                kernel.hooks.call_impl("vendo_register_commands", plugin, impl, register=register)
            except VendoError as exc:
                info = kernel.plugin(plugin)
                if info is not None:
                    info.status, info.error = "failed", str(exc)
                continue
            commands.update(pending)
        _state["plugin_commands"] = commands
        return commands

    def list_commands(self, ctx: Any) -> list[str]:
        return list(super().list_commands(ctx)) + sorted(self._plugin_commands(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._plugin_commands(ctx).get(cmd_name)


app = typer.Typer(
    name="vendo",
    cls=_PluginCommands,
    help="Vendo: auth, billing, licensing, entitlements and AI for the software you sell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
plugins_app = typer.Typer(help="Inspect installed plugins.", no_args_is_help=True, rich_markup_mode=None)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True, rich_markup_mode=None)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True, rich_markup_mode=None)
plans_app = typer.Typer(help="The plan catalog: load, show, assign.", no_args_is_help=True, rich_markup_mode=None)
usage_app = typer.Typer(help="Usage counters: rebuild them from the ledger, reconcile drift.", no_args_is_help=True,
                        rich_markup_mode=None)
billing_app = typer.Typer(help="Billing: webhook events, replay, catalog sync, manual assignment.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(plugins_app, name="plugins")
app.add_typer(billing_app, name="billing")
app.add_typer(plans_app, name="plans")
app.add_typer(usage_app, name="usage")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vendo {__version__} (plugin API {API_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Path to vendo.toml (default: $VENDO_CONFIG or ./vendo.toml)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if config is not None:
        _state["config"] = config


# -- serve ------------------------------------------------------------------------


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Interface to bind (default: server.host, 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default: server.port, 8000)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: server.workers, 1)."),
    reload: bool = typer.Option(False, help="Restart on code changes (development)."),
) -> None:
    """Run the HTTP server (uvicorn with uvloop and httptools)."""
    import os

    import uvicorn

    kernel = cli_kernel()
    kernel.providers.configure(kernel.settings.providers)
    kernel.check_database()
    kernel.close()
    server = kernel.settings.server
    if _state["config"] is not None:
        os.environ["VENDO_CONFIG"] = str(Path(_state["config"]).resolve())
    bind_host, bind_port = host or server.host, port if port is not None else server.port
    # The served app (built anew in each worker) knows its own address, e.g. for hosted-page links.
    os.environ["VENDO_SERVER__HOST"], os.environ["VENDO_SERVER__PORT"] = bind_host, str(bind_port)
    count = workers or server.workers
    failed = [p.name for p in kernel.plugins if p.status in ("failed", "incompatible")]
    typer.echo(f"Vendo {__version__} on http://{bind_host}:{bind_port} ({count} worker{'s' * (count > 1)})", err=True)
    if failed:
        typer.echo(f"warning: plugins not loaded: {', '.join(failed)} (see `vendo plugins doctor`)", err=True)
    uvicorn.run(
        "vendo.app:app_factory",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=None if reload else count,
        reload=reload,
        loop="auto",
        http="auto",
        log_level=kernel.settings.log_level.lower(),
    )


# -- plugins ------------------------------------------------------------------------


@plugins_app.command("list")
def plugins_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List plugins with their distribution, version, status and hooks."""
    kernel = cli_kernel()
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in kernel.plugins], indent=2))
        return
    rows = [("NAME", "VERSION", "DISTRIBUTION", "STATUS", "HOOKS / ERROR")]
    for p in kernel.plugins:
        detail = p.error if p.error else ", ".join(h.removeprefix("vendo_") for h in p.hooks)
        rows.append((p.name, p.version or "-", p.distribution or "(explicit)", p.status, detail or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])


@plugins_app.command("doctor")
def plugins_doctor() -> None:
    """Check plugins, providers and the database; exit 1 if an enabled plugin is broken."""
    kernel = cli_kernel()
    problems = 0
    for p in kernel.plugins:
        if p.status in ("failed", "incompatible"):
            problems += 1
            typer.echo(f"FAIL plugin {p.name} ({p.status}): {p.error}")
        else:
            typer.echo(f"ok   plugin {p.name} ({p.status})")
    try:
        kernel.providers.configure(kernel.settings.providers)
        for family, entries in kernel.providers.summary().items():
            if entries:
                names = ", ".join(f"{e['name']}{'*' if e['active'] else ''}" for e in entries)
                typer.echo(f"ok   providers {family}: {names}")
    except ConfigError as exc:
        problems += 1
        typer.echo(f"FAIL providers: {exc.message}")
    for warning in kernel.warnings:
        typer.echo(f"warn {warning}")
    try:
        kernel.check_database()
        typer.echo("ok   database: at its current migrations")
        for channel, count in kernel.outbox.waiting_notifications().items():
            typer.echo(f"warn notifications: {count} {channel} notification(s) waiting in the outbox, no notifier "
                       f"registered for channel '{channel}' (see `vendo outbox list --type notification.requested`)")
    except VendoError as exc:
        typer.echo(f"warn database: {exc.message}")
    if problems:
        typer.echo(f"{problems} problem(s) found", err=True)
        raise typer.Exit(1)


# -- db -----------------------------------------------------------------------------


def _print_status(status: Any) -> None:
    typer.echo(f"current: {', '.join(status.current) or '(empty)'}")
    typer.echo(f"heads:   {', '.join(status.heads)}")
    typer.echo(status.describe())


def _db_kernel() -> Any:
    from sqlalchemy.exc import DBAPIError

    kernel = cli_kernel()
    kernel.prepare_storage()
    try:
        with kernel.engine.connect():
            pass
    except DBAPIError:
        kernel.check_database()  # raises the readable "cannot connect" error
    return kernel


@db_app.command("upgrade")
def db_upgrade(target: str = typer.Argument("heads", help="Revision to reach (default: every head).")) -> None:
    """Apply the kernel's and the plugins' migrations."""
    from vendo.db import migrations

    _print_status(_run_migration(migrations.upgrade, _db_kernel(), target))


@db_app.command("downgrade")
def db_downgrade(target: str = typer.Argument(..., help="Revision to go back to, e.g. 'base' or 'vendo@-1'.")) -> None:
    """Revert migrations down to TARGET."""
    from vendo.db import migrations

    _print_status(_run_migration(migrations.downgrade, _db_kernel(), target))


def _run_migration(action: Any, kernel: Any, target: str) -> Any:
    from alembic.util.exc import CommandError

    try:
        return action(kernel, target)
    except CommandError as exc:
        raise ConfigError(f"migration target {target!r}: {exc}") from None


@db_app.command("current")
def db_current() -> None:
    """Show the database's revisions against this install's heads."""
    from vendo.db import migrations

    kernel = cli_kernel()
    try:
        kernel.check_database()
    except VendoError as exc:
        if "does not exist" in exc.message or "cannot connect" in exc.message:
            raise
    with kernel.engine.connect() as connection:
        status = migrations.status(kernel, connection)
    _print_status(status)
    if not status.up_to_date:
        raise typer.Exit(1)


# -- plans ----------------------------------------------------------------------------


@plans_app.command("load")
def plans_load(path: Path = typer.Argument(..., help="A TOML catalog file.")) -> None:
    """Validate a catalog file and make it the current version (unchanged content: no new version)."""
    from vendo.entitlements.catalog import load_catalog

    catalog = load_catalog(path)
    kernel = cli_kernel()
    kernel.check_database()
    version, changed = kernel.entitlements.load_catalog(catalog, source=str(path))
    state = "loaded as" if changed else "unchanged:"
    typer.echo(f"{state} catalog version {version}: {len(catalog.plans)} plans, {len(catalog.features)} features")


@plans_app.command("show")
def plans_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the current catalog: plans, prices and what each grants."""
    kernel = cli_kernel()
    kernel.check_database()
    catalog = kernel.entitlements.catalog()
    if as_json:
        typer.echo(json.dumps(catalog.model_dump(mode="json"), indent=2))
        return
    for plan in catalog.ordered_plans():
        prices = ", ".join(
            f"{p.amount} {p.currency.upper()}/{p.interval}" + (f" + {p.per_seat}/seat" if p.per_seat else "")
            for p in plan.flat_prices
        ) or "free"
        prices += "".join(f" + {p.amount} {p.currency.upper()} per {p.metered_feature} ({p.interval}ly, in arrears)"
                          for p in plan.prices if p.metered)
        flags = " (default)" if plan.default else ""
        trial = f", {plan.trial_days}-day trial" if plan.trial_days else ""
        typer.echo(f"{plan.id}{flags}: {plan.name} - {prices}{trial}")
        for name, grant in plan.features.items():
            kind = catalog.features[name].kind
            if kind == "boolean":
                value = "yes" if grant.enabled else "no"
            else:
                value = "unlimited" if grant.limit is None else str(grant.limit)
                if kind == "metered":
                    value += f" per {grant.period or catalog.features[name].period}"
                if grant.per_member is not None:
                    value += f" (at most {grant.per_member} per member)"
            typer.echo(f"    {name}: {value}")


@plans_app.command("assign")
def plans_assign(
    subject: str = typer.Argument(..., help="A workspace id (ws_...) or a user id."),
    plan: str = typer.Argument(..., help="A plan id of the current catalog."),
    trial: bool = typer.Option(False, help="Start the plan's trial instead."),
) -> None:
    """Put a subject on a plan without payment (administrators, self-hosters)."""
    kernel = cli_kernel()
    kernel.check_database()
    with kernel.session() as session:
        assignment = kernel.entitlements.assign(session, subject, plan, status="trialing" if trial else "active")
        kernel.audit.record(session, "plan.assigned", actor_label="cli",
                            workspace=subject if subject.startswith("ws_") else None, target_type="subject",
                            target_id=subject, details={"plan": plan, "status": assignment.status})
    typer.echo(f"{subject} is on {plan} ({assignment.status})")


# -- usage ----------------------------------------------------------------------------


def _usage_kernel() -> Any:
    kernel = cli_kernel()
    kernel.providers.configure(kernel.settings.providers)
    kernel.check_database()
    return kernel


def _store_name(kernel: Any) -> str:
    return next((r.name for r in kernel.providers.registered("counters")
                 if r.provider is kernel.providers.get("counters")), "counters")


@usage_app.command("rebuild")
def usage_rebuild(
    all_periods: bool = typer.Option(False, "--all-periods", help="Every counter the ledger knows, not only the "
                                                                   "current periods'."),
) -> None:
    """Recompute the counters from the usage ledger and the open holds, and write them into the
    active counter store (after it lost its data, e.g. Redis restarted without persistence)."""
    kernel = _usage_kernel()
    count = kernel.entitlements.rebuild_counters(all_periods=all_periods)
    typer.echo(f"rebuilt {count} counter{'s' * (count != 1)} in the {_store_name(kernel)} store")


@usage_app.command("reconcile")
def usage_reconcile(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report drift without fixing it (exit 1 if any)."),
    all_periods: bool = typer.Option(False, "--all-periods", help="Every counter the ledger knows, not only the "
                                                                   "current periods'."),
) -> None:
    """Apply the journal, compare every counter with the ledger and fix the ones that drifted."""
    kernel = _usage_kernel()

    def report(key: str, store: int, ledger: int) -> None:
        typer.echo(f"{key}: store {store}, ledger {ledger}")

    keys = kernel.entitlements.reconcile(fix=not dry_run, all_periods=all_periods, on_drift=report)
    if not keys:
        typer.echo(f"no drift: the {_store_name(kernel)} store agrees with the ledger")
    elif dry_run:
        typer.echo(f"{len(keys)} counter{'s' * (len(keys) != 1)} drifted (not fixed: --dry-run)")
        raise typer.Exit(1)
    else:
        typer.echo(f"fixed {len(keys)} counter{'s' * (len(keys) != 1)}")


# -- billing --------------------------------------------------------------------------


def _billing_kernel() -> Any:
    kernel = cli_kernel()
    kernel.providers.configure(kernel.settings.providers)
    kernel.check_database()
    return kernel


@billing_app.command("events")
def billing_events(
    status: Optional[str] = typer.Option(None, help="Only events in this status: received, processed or failed."),
    limit: int = typer.Option(50, min=1, max=10_000, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List stored billing events (webhooks), newest first."""
    rows = _billing_kernel().billing.events(status=status, limit=limit)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
            continue
        error = f"  {row['error']}" if row["error"] else ""
        typer.echo(f"{row['received_at']}  {row['provider']}  {row['id']}  {row['type']}  {row['status']}"
                   f"{' (' + row['outcome'] + ')' if row['outcome'] else ''}  {row['attempts']} attempt(s){error}")
    if not rows and not as_json:
        typer.echo("no billing events")


@billing_app.command("replay")
def billing_replay(
    event_id: str = typer.Argument(..., help="The provider's event id shown by `vendo billing events`."),
    provider: Optional[str] = typer.Option(None, help="The provider, when several sent that id."),
) -> None:
    """Apply a stored billing event again (one that failed or was never processed)."""
    result = _billing_kernel().billing.replay(event_id, provider)
    typer.echo(f"{result['id']} ({result['type']}): {result['status']}, {result['outcome']}")


@billing_app.command("sync-catalog")
def billing_sync_catalog() -> None:
    """Push the current plan catalog's prices to the active billing provider."""
    import asyncio

    mapping = asyncio.run(_billing_kernel().billing.sync_catalog())
    for key, price_id in sorted(mapping.items()):
        typer.echo(f"{key} -> {price_id}")
    typer.echo(f"{len(mapping)} price{'s' * (len(mapping) != 1)} synced")


@billing_app.command("report-usage")
def billing_report_usage(
    subject: Optional[str] = typer.Option(None, help="Only this subject's subscriptions (ws_...)."),
    status: bool = typer.Option(False, "--status", help="Show what is billed and pending; report nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Push the usage billed by usage-based prices to the billing provider now (`vendo serve`
    does it every [billing] usage_report_interval seconds). Exits 1 when a report failed (it
    is kept and sent again, under the same idempotency key, by the next run)."""
    import asyncio

    kernel = _billing_kernel()
    if status:
        rows = kernel.billing.usage.status(subject)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            pending = f", {row['pending_units']} pending" if row["pending_units"] else ""
            error = f", last error: {row['last_error']}" if row["last_error"] else ""
            typer.echo(f"{row['subject']} {row['subscription_id']} {row['feature']}: {row['billed_units']} billed "
                       f"since {row['counted_since']}{pending}{error}")
        if not rows:
            typer.echo("no usage-based subscriptions")
        return
    results = asyncio.run(kernel.billing.report_usage(subject))
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for result in results:
            outcome = "reported" if result["status"] == "reported" else f"FAILED ({result['error']})"
            typer.echo(f"{result['subject']} {result['subscription_id']} {result['feature']}: "
                       f"{result['units']} unit(s) {outcome}")
        typer.echo(f"{sum(r['status'] == 'reported' for r in results)} usage report(s) sent")
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(1)


@billing_app.command("assign")
def billing_assign(
    subject: str = typer.Argument(..., help="A workspace id (ws_...)."),
    plan: str = typer.Argument(..., help="A plan id of the current catalog."),
    seats: int = typer.Option(1, min=1, help="Seat count."),
    trial: bool = typer.Option(False, help="Start the plan's trial (no card)."),
    interval: str = typer.Option("month", help="month or year."),
    currency: Optional[str] = typer.Option(None, help="Default: the catalog's currency."),
) -> None:
    """Put a subject on a plan without payment, through the billing provider and the
    subscription state machine (providers that support it, e.g. local)."""
    import asyncio

    state = asyncio.run(_billing_kernel().billing.assign(subject, plan, seats=seats, trial=trial,
                                                         interval=interval, currency=currency))
    sub = state["subscription"] or {}
    typer.echo(f"{subject} is on {sub.get('plan')} ({sub.get('status')}, {sub.get('seats')} seat(s))")


# -- config ---------------------------------------------------------------------------


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings (kernel and plugins), secrets masked."""
    kernel = cli_kernel()
    data: dict[str, Any] = kernel.settings.display()
    data["config_file"] = str(kernel.settings.config_file) if kernel.settings.config_file else None
    for p in kernel.plugins:
        plugin_settings = kernel.plugin_settings(p.name)
        if plugin_settings is not None:
            data.setdefault("plugin_settings", {})[p.name] = plugin_settings.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    for line in _flatten(data):
        typer.echo(line)
    for warning in kernel.warnings:
        typer.echo(f"warning: {warning}", err=True)


def _flatten(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict) and data:
        lines = []
        for key, value in data.items():
            lines += _flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
        return lines
    return [f"{prefix} = {json.dumps(data, default=str)}"]


# -- entry point ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: one readable error line and a non-zero exit for every mistake."""
    _state.update({"config": None, "kernel": None})
    _state.pop("plugin_commands", None)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="vendo", standalone_mode=False)
    except click_exceptions.UsageError as exc:
        _fail(f"{exc.format_message()} (see --help)", 2)
    except typer.Abort:
        _fail("aborted", 130)
    except VendoError as exc:
        _fail(exc.message, 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    finally:
        kernel = _state.get("kernel")
        if kernel is not None:
            kernel.close()
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()

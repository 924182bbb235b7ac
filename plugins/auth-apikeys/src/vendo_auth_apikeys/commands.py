"""``vendo api-keys``: the operator's commands, across workspaces (no HTTP, no role check:
whoever runs them has the deployment's database).

- ``list [--workspace WS]``: keys with their status and tier (never a secret);
- ``set-tier KEY TIER``: give a key a tier, the operator-only ``operator_rate_limit_tiers`` included;
- ``revoke KEY``: stop a (leaked) key at once.

``KEY`` is a key id, the prefix lists show (``vk_live_<id>…``) or the whole key.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

app = typer.Typer(help="API keys, for the operator: list, set a rate-limit tier, revoke.", no_args_is_help=True,
                  rich_markup_mode=None)


def _service() -> tuple[Any, Any]:
    from vendo import cli_kernel

    from vendo_auth_apikeys import PLUGIN_NAME
    from vendo_auth_apikeys.service import ApiKeys

    kernel = cli_kernel()
    kernel.check_database()
    return kernel, ApiKeys(kernel, kernel.plugin_settings(PLUGIN_NAME))


@app.command("list")
def list_keys(workspace: Optional[str] = typer.Option(None, "--workspace", help="Only this workspace's keys.")) -> None:
    """Every key (or a workspace's): id, workspace, status, tier, name."""
    from sqlalchemy import select

    from vendo_auth_apikeys.models import ApiKey

    kernel, _ = _service()
    now = kernel.now()
    with kernel.session(read_only=True) as session:
        query = select(ApiKey).order_by(ApiKey.workspace_id, ApiKey.created_at, ApiKey.id)
        if workspace:
            query = query.where(ApiKey.workspace_id == workspace)
        rows = session.scalars(query).all()
        lines = [f"{row.as_dict(now)['prefix']:<26} {row.workspace_id:<36} {row.status(now):<8} "
                 f"{row.rate_limit_tier:<12} {row.name}" for row in rows]
    typer.echo("\n".join(lines) if lines else "no API keys")


@app.command("set-tier")
def set_tier(key: str = typer.Argument(..., metavar="KEY"), tier: str = typer.Argument(..., metavar="TIER")) -> None:
    """Give a key a rate-limit tier (operator tiers included)."""
    kernel, service = _service()
    with kernel.session() as session:
        row = service.operator_set_tier(session, key, tier)
        typer.echo(f"{row.id} of workspace {row.workspace_id}: rate-limit tier {row.rate_limit_tier}")


@app.command("revoke")
def revoke(key: str = typer.Argument(..., metavar="KEY")) -> None:
    """Revoke a key at once, whatever its workspace."""
    kernel, service = _service()
    with kernel.session() as session:
        row, now = service.operator_revoke(session, key)
        typer.echo(f"{row.id} of workspace {row.workspace_id}: {'revoked' if now else 'already revoked'}")

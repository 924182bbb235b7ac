"""The ``vendo-sdk`` command: scaffold, check and document Vendo plugins."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="vendo-sdk",
    help="Write, test and check Vendo plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class SDKError(Exception):
    """A user mistake: printed as one line, exit code 1."""


@app.command()
def new(
    name: str = typer.Argument(..., help="Short plugin name, e.g. 'weather' (gives vendo-<kind>-weather)."),
    kind: str = typer.Option(..., "--kind", "-k", help="auth, billing, license, ai, knowledge, tool, vector_store, counters or generic."),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Package directory (default ./vendo-<kind>-<name>)."),
) -> None:
    """Scaffold a plugin package: pyproject with its entry point, working hooks, README and tests."""
    from vendo_sdk.scaffold import ScaffoldError, new_plugin

    try:
        names, target = new_plugin(name, kind, directory)
    except ScaffoldError as exc:
        raise SDKError(str(exc)) from None
    typer.echo(f"created {names.dist} in {target}")
    typer.echo(f"  entry point: {names.plugin} = {names.module}")
    typer.echo(f"next: pip install -e '{target}[test]' && pytest {target} && vendo plugins list")


@app.command()
def hooks() -> None:
    """Print the hook reference (Markdown), generated from the kernel's hookspecs."""
    from vendo.hookdocs import render_markdown

    typer.echo(render_markdown(), nl=False)


@app.command()
def check(
    path: Path = typer.Argument(..., help="The plugin package directory (the one holding pyproject.toml)."),
    timeout: float = typer.Option(30.0, help="Seconds each entry point's import may take."),
) -> None:
    """Validate a plugin package without installing it or starting a server.

    Prints one line per problem (``file:line: problem. fix``) and exits 1, or prints
    ``ok: <name> <version>: N checks passed`` and exits 0.
    """
    from vendo_sdk.checker import CheckError
    from vendo_sdk.checker import check as check_package

    try:
        report = check_package(path, timeout=timeout)
    except CheckError as exc:
        raise SDKError(str(exc)) from exc
    if report.problems:
        for problem in report.problems:
            typer.echo(str(problem))
        raise typer.Exit(1)
    typer.echo(report.summary())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI with one-line errors."""
    from vendo.cli import click_exceptions

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="vendo-sdk", standalone_mode=False)
    except click_exceptions.UsageError as exc:
        typer.echo(f"error: {exc.format_message()} (see --help)", err=True)
        sys.exit(2)
    except SDKError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()

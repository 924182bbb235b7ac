"""The `vendo` command line, run as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def vendo(*args: str, env: dict[str, str] | None = None, site: Path | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    environment.update(env or {})
    if site is not None:
        environment["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "vendo", *args], capture_output=True, text=True, env=environment, timeout=120
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_version_and_help() -> None:
    assert vendo("--version").stdout.startswith("vendo 0.1.0 (plugin API 1.0)")
    help_text = vendo("--help").stdout
    for command in ("serve", "plugins", "db", "config", "outbox"):
        assert command in help_text


def test_fresh_directory_flow() -> None:
    """db upgrade creates the embedded database; then current, plugins and doctor are green."""
    assert_one_line_error(vendo("db", "current"), "does not exist yet: run `vendo db upgrade`")
    upgraded = vendo("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "at its current migrations" in upgraded.stdout
    assert Path(".vendo/vendo.db").is_file()
    assert vendo("db", "current").returncode == 0
    listed = vendo("plugins", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split() == ["NAME", "VERSION", "DISTRIBUTION", "STATUS", "HOOKS", "/", "ERROR"]
    assert any(line.split()[:4] == ["core", "0.1.0", "vendo", "ok"] for line in listed.stdout.splitlines())
    doctor = vendo("plugins", "doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert "ok   database: at its current migrations" in doctor.stdout
    assert vendo("outbox", "list").stdout.strip() == "no events"
    assert vendo("outbox", "dispatch").stdout.strip() == "0 deliveries attempted"


def test_downgrade_then_current_reports_behind() -> None:
    vendo("db", "upgrade")
    down = vendo("db", "downgrade", "base")
    assert down.returncode == 0 and "no Vendo tables yet" in down.stdout
    current = vendo("db", "current")
    assert current.returncode == 1 and "run `vendo db upgrade`" in current.stdout
    assert_one_line_error(vendo("db", "downgrade", "nonsense"), "migration target 'nonsense'")


def test_plugins_list_json(fake_site) -> None:
    site = fake_site("vendo-broken", {"vendo_broken": "raise RuntimeError('no licence file')"}, {"broken": "vendo_broken"})
    result = vendo("plugins", "list", "--json", site=site)
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["core"]["status"] == "ok" and plugins["core"]["builtin"] is True
    assert plugins["broken"] == {
        "name": "broken", "distribution": "vendo-broken", "version": "1.0.0", "module": "vendo_broken",
        "builtin": False, "status": "failed", "error": "import failed: RuntimeError: no licence file",
        "hooks": [], "api": None,
    }


def test_doctor_fails_on_a_broken_plugin(fake_site) -> None:
    site = fake_site("vendo-broken", {"vendo_broken": "raise RuntimeError('no licence file')"}, {"broken": "vendo_broken"})
    vendo("db", "upgrade", site=site)
    result = vendo("plugins", "doctor", site=site)
    assert result.returncode == 1
    assert "FAIL plugin broken (failed): import failed: RuntimeError: no licence file" in result.stdout


def test_plugin_commands_are_added_lazily(fake_site) -> None:
    source = textwrap.dedent(
        """
        import typer
        from vendo import hookimpl

        app = typer.Typer(name="greet", help="Say hello.")

        @app.command()
        def hello(name: str):
            from vendo import cli_kernel
            typer.echo(f"hello {name} from {cli_kernel().settings.data_dir}")

        @hookimpl
        def vendo_register_commands(register):
            register(app)
        """
    )
    site = fake_site("vendo-greet", {"vendo_greet": source}, {"greet": "vendo_greet"})
    result = vendo("greet", "hello", "ada", site=site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello ada from .vendo"
    assert "greet" in vendo("--help", site=site).stdout


def test_config_show_masks_secrets(fake_site) -> None:
    source = textwrap.dedent(
        """
        from pydantic import SecretStr
        from vendo import PluginSettings, hookimpl

        class Settings(PluginSettings):
            api_key: SecretStr
            region: str = "eu"

        @hookimpl
        def vendo_settings_model():
            return Settings
        """
    )
    site = fake_site("vendo-secretive", {"vendo_secretive": source}, {"secretive": "vendo_secretive"})
    env = {"VENDO_DATABASE_URL": "postgresql://vendo:hunter2@db.example/vendo", "VENDO_SECRETIVE__API_KEY": "sk_live_abc"}
    result = vendo("config", "show", "--json", env=env, site=site)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "sk_live_abc" not in result.stdout
    data = json.loads(result.stdout)
    assert data["database_url"] == "postgresql+psycopg://vendo:***@db.example/vendo"
    assert data["plugin_settings"]["secretive"] == {"api_key": "**********", "region": "eu"}
    text = vendo("config", "show", env=env, site=site).stdout
    assert 'plugin_settings.secretive.region = "eu"' in text and "sk_live_abc" not in text


@pytest.mark.parametrize(
    ("setup", "args", "fragments"),
    [
        ({"vendo.toml": "database_url = \n"}, ("plugins", "list"), ("vendo.toml: invalid TOML", "line 1")),
        ({"vendo.toml": "databse_url = 'x'\n"}, ("config", "show"), ("unknown setting 'databse_url'", "database_url")),
        ({}, ("--config", "nope.toml", "config", "show"), ("nope.toml not found (given by --config)",)),
        ({}, ("nonsense",), ("No such command 'nonsense'",)),
        ({}, ("serve", "--port", "eighty"), ("Invalid value for '--port'",)),
        ({}, ("outbox", "list", "--status", "lost"), ()),
    ],
)
def test_user_mistakes_give_one_line_and_nonzero_exit(setup, args, fragments) -> None:
    for name, content in setup.items():
        Path(name).write_text(content)
    vendo("db", "upgrade") if not setup else None
    assert_one_line_error(vendo(*args), *fragments)


def test_unreachable_database_is_one_line() -> None:
    env = {"VENDO_DATABASE_URL": "postgresql+psycopg://vendo:hunter2@127.0.0.1:1/vendo"}
    result = vendo("db", "upgrade", env=env)
    assert_one_line_error(result, "cannot connect to the database postgresql+psycopg://vendo:***@127.0.0.1:1/vendo")
    assert "hunter2" not in result.stderr


def test_serve_refuses_an_unmigrated_database() -> None:
    assert_one_line_error(vendo("serve"), "run `vendo db upgrade`")


def test_bad_provider_choice_stops_serve() -> None:
    vendo("db", "upgrade")
    result = vendo("serve", env={"VENDO_PROVIDERS__BILLING": "paddle"})
    assert_one_line_error(result, "[providers] billing = 'paddle', but no such billing provider is registered")

"""What a new user does from the README: upgrade, serve, install a plugin, see it work.

Real `vendo` processes on loopback; plugins installed from directories holding a
pyproject.toml, the way `pip install ./my-plugin` installs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from support import FIXTURE_PLUGINS, pip_install, run_vendo, vendo_env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site-packages")
    pip_install(target, FIXTURE_PLUGINS / "vendo-hello", FIXTURE_PLUGINS / "vendo-broken")
    return target


def test_serve_answers_health_on_sqlite_by_default(serve) -> None:
    env = vendo_env()
    assert run_vendo("db", "upgrade", env=env).returncode == 0
    server = serve(env)
    response = server.wait_ready()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["ok"] is True
    assert body["plugins"][0]["name"] == "core"
    assert {p["status"] for p in body["plugins"]} == {"ok"}  # every first-party plugin loads
    assert Path(".vendo/vendo.db").is_file()


def test_installed_plugin_is_listed_and_answers_while_a_broken_one_is_reported(site: Path, serve) -> None:
    env = vendo_env(site)
    assert run_vendo("db", "upgrade", env=env).returncode == 0
    listed = {p["name"]: p for p in json.loads(run_vendo("plugins", "list", "--json", env=env).stdout)}
    assert listed["hello"]["status"] == "ok"
    assert (listed["hello"]["distribution"], listed["hello"]["version"]) == ("vendo-hello", "0.3.0")
    assert listed["hello"]["hooks"] == ["vendo_register_commands", "vendo_register_routes", "vendo_register_tools"]
    assert listed["broken"]["status"] == "failed"
    assert listed["broken"]["error"] == (
        "import failed: ImportError: vendo-broken needs the 'frobnicate' package: pip install frobnicate"
    )
    assert run_vendo("hello", "say", "ada", env=env).stdout.strip() == "hello, ada"

    server = serve(env)
    health = server.wait_ready().json()
    assert health["status"] == "degraded"
    statuses = {p["name"]: p["status"] for p in health["plugins"]}
    assert (statuses["core"], statuses["broken"], statuses["hello"]) == ("ok", "failed", "ok")
    assert httpx.get(server.url + "/api/v1/hello/ada").json() == {"message": "hello, ada"}
    assert server.url and "/api/v1/hello/{name}" in httpx.get(server.url + "/openapi.json").json()["paths"]


def test_disabled_plugin_is_not_served(site: Path, serve) -> None:
    env = vendo_env(site, VENDO_PLUGINS__DISABLED="hello,broken")
    run_vendo("db", "upgrade", env=env)
    server = serve(env)
    assert server.wait_ready().json()["status"] == "ok"
    response = httpx.get(server.url + "/api/v1/hello/ada")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_two_workers_serve_on_postgresql(serve, postgres_url: str) -> None:
    env = vendo_env(VENDO_DATABASE_URL=postgres_url)
    assert run_vendo("db", "upgrade", env=env).returncode == 0
    server = serve(env, "--workers", "2")
    assert server.wait_ready().json()["database"]["ok"] is True
    with httpx.Client(base_url=server.url) as client:
        statuses = {client.get("/api/health").status_code for _ in range(50)}
    assert statuses == {200}
    assert "(2 workers)" in server.log.read_text()

"""examples/open-core-desktop: the terminal app activates a key issued by `vendo license
issue` against a real `vendo serve`, then gates features offline (real processes, loopback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "open-core-desktop" / "qoredb_lite.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def service(tmp_path: Path) -> Any:
    """A license service (`vendo serve`, SQLite) and a way to run `vendo` against its database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    env.update({"VENDO_SECRET_KEY": "example-tests-master-secret-0123456789abcdef",
                "VENDO_PLUGINS__ENABLED": '["license-ed25519"]', "VENDO_LOG_LEVEL": "WARNING"})
    server_dir = tmp_path / "server"
    server_dir.mkdir()

    def vendo(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "vendo", *args], env=env, cwd=server_dir, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    vendo("db", "upgrade")
    vendo("license", "keygen")
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "vendo", "serve", "--port", str(port)], env=env,
                               cwd=server_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "vendo serve did not start"
        time.sleep(0.2)

    class Service:
        def __init__(self) -> None:
            self.url, self.vendo, self.process = url, vendo, process

    yield Service()
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def app(tmp_path: Path, service: Any) -> Any:
    """Run the example app as a user would, with its own data directory and embedded keys."""
    keys = tmp_path / "public_keys.json"
    keys.write_text(service.vendo("license", "export-public-key"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VENDO_", "QOREDB_"))}
    env.update({"QOREDB_DATA_DIR": str(tmp_path / "app-data"), "QOREDB_PUBLIC_KEYS": str(keys),
                "QOREDB_LICENSE_SERVER": service.url, "VENDO_LICENSE_MACHINE_ID": "test-machine-1"})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(APP), *args], env=env, capture_output=True, text=True, timeout=60)

    return run


def _one_line_error(done: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_core_free_preview_activation_offline_gating_and_revocation(app, service) -> None:
    assert app("status").stdout.startswith("Core (free)")
    assert "Core" in app("query", "select 1").stdout
    _one_line_error(app("er-diagram"), 3, "Pro feature")
    for n in (1, 2, 3):
        assert f"free preview {n} of 3" in app("sandbox", f"update t set x = {n}").stdout
    _one_line_error(app("sandbox", "update t set x = 4"), 3, "3 free sandbox changes are used")

    key = service.vendo("license", "issue", "--email", "ada@example.com", "--tier", "pro", "-f", "er_diagram",
                        "-f", "sandbox_changes", "--max-machines", "1", "--key-only").strip()
    activated = app("activate", key)
    assert activated.returncode == 0, activated.stderr
    assert activated.stdout.startswith("activated: Pro (perpetual): er_diagram, sandbox_changes")
    assert "(Pro)" in app("er-diagram").stdout and "(Pro)" in app("sandbox", "update t set x = 5").stdout
    _one_line_error(app("visual-diff"), 3, "Pro feature")  # not in this key

    service.process.terminate()  # offline from here: the app keeps gating with the stored license
    service.process.wait(timeout=20)
    assert "(Pro)" in app("er-diagram").stdout
    assert app("status").stdout.startswith("Pro (perpetual)")
    _one_line_error(app("refresh"), 1, "cannot reach the license server")


def test_malformed_key_and_activation_limit_are_one_line_errors(app, service, tmp_path) -> None:
    _one_line_error(app("activate", "garbage"), 1, "malformed_key")
    _one_line_error(app("activate", "VENDO1-abc.def"), 1, "malformed_key")
    key = service.vendo("license", "issue", "--email", "ada@example.com", "--tier", "pro", "-f", "er_diagram",
                        "--max-machines", "1", "--key-only").strip()
    assert app("activate", key).returncode == 0
    other = subprocess.run(
        [sys.executable, str(APP), "activate", key], capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("VENDO_", "QOREDB_"))},
             "QOREDB_DATA_DIR": str(tmp_path / "other-machine"),
             "QOREDB_PUBLIC_KEYS": str(tmp_path / "public_keys.json"), "QOREDB_LICENSE_SERVER": service.url,
             "VENDO_LICENSE_MACHINE_ID": "test-machine-2"})
    _one_line_error(other, 1, "activation_limit")
    assert app("deactivate").returncode == 0 and app("status").stdout.startswith("Core (free)")
    assert other.returncode == 1


def test_revocation_reaches_the_app_on_refresh(app, service) -> None:
    issued = json.loads(service.vendo("license", "issue", "--email", "ada@example.com", "--tier", "pro",
                                      "-f", "er_diagram"))
    assert app("activate", issued["key"]).returncode == 0
    assert "(Pro)" in app("er-diagram").stdout
    service.vendo("license", "revoke", issued["id"])
    refreshed = app("refresh")
    assert refreshed.returncode == 0 and "license revoked" in refreshed.stdout
    _one_line_error(app("er-diagram"), 3, "license revoked")


def test_activate_from_key_is_importable_for_end_to_end_tests(tmp_path, service, monkeypatch) -> None:
    """The integrator's purchase test calls this function with the emailed key."""
    import importlib.util

    keys = tmp_path / "keys.json"
    keys.write_text(service.vendo("license", "export-public-key"))
    monkeypatch.setenv("QOREDB_PUBLIC_KEYS", str(keys))
    monkeypatch.setenv("QOREDB_DATA_DIR", str(tmp_path / "in-process"))
    monkeypatch.setenv("VENDO_LICENSE_MACHINE_ID", "test-machine-3")
    spec = importlib.util.spec_from_file_location("qoredb_lite", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    key = service.vendo("license", "issue", "--email", "e2e@example.com", "--tier", "pro", "-f", "er_diagram",
                        "--key-only").strip()
    status = module.activate_from_key(key, service.url)
    assert status.valid and status.is_feature_enabled("er_diagram")
    assert module.license_client().is_feature_enabled("er_diagram")

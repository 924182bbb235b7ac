"""The operator lifts a lockout: in-process, and as ``vendo auth-password unlock`` (a real
process on the test's database)."""

from __future__ import annotations

import os
import subprocess
import sys

from vendo_auth_password import service_for


def lock_out(api) -> None:
    api.register()
    for _ in range(2):
        api.login(password="Wrong-password-1")
    assert api.login().status_code == 429


def test_unlocking_lifts_the_lockout_at_once(make_kernel, make_api):
    kernel = make_kernel(lockout_threshold=2)
    api = make_api(kernel)
    lock_out(api)
    assert service_for(kernel, None).unlock("ADA@example.com") is True
    assert api.login().status_code == 200
    assert service_for(kernel, None).unlock("ada@example.com") is False
    [entry, _again] = api.audit("auth.password.unlocked")
    assert entry["details"] == {"was_locked": True} and entry["actor_label"] == "operator"


def test_the_unlock_command(make_kernel, make_api, database_url, tmp_path):
    kernel = make_kernel(lockout_threshold=2)
    api = make_api(kernel)
    lock_out(api)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    env.update({"VENDO_DATABASE_URL": database_url, "VENDO_DATA_DIR": str(tmp_path / "cli"),
                "VENDO_PLUGINS__ENABLED": '["auth-password"]'})

    def vendo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vendo", "auth-password", *args], capture_output=True,
                              text=True, env=env, timeout=120)

    done = vendo("unlock", "ada@example.com")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ada@example.com: ")
    assert api.login().status_code == 200
    unknown = vendo("unlock", "nobody@example.com")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert [line for line in unknown.stderr.splitlines() if line.startswith("error: ")] == [
        "error: no account uses 'nobody@example.com'"]

"""QoreDB Lite: a terminal app in the spirit of seed 000 (open core, offline licensing).

Core features always work; Pro features are gated by a license verified **offline** with
``vendo-license-client`` (PyNaCl only) against public keys embedded with the app. The
sandbox has a free preview of 3 changes before the upgrade prompt. The license service is
only needed to activate, refresh and deactivate::

    python qoredb_lite.py status
    python qoredb_lite.py query "select 1"             # Core: always on
    python qoredb_lite.py sandbox "update t set x = 1" # Pro, 3 free previews
    python qoredb_lite.py er-diagram                    # Pro
    python qoredb_lite.py activate VENDO1-... --server http://127.0.0.1:8000
    python qoredb_lite.py refresh --server ...          # new license file + revocation list
    python qoredb_lite.py deactivate --server ...

Public keys come from ``public_keys.json`` beside this file (``vendo license
export-public-key > public_keys.json``) or from ``QOREDB_PUBLIC_KEYS`` (a path). State lives
in ``QOREDB_DATA_DIR`` (default ``~/.local/share/qoredb-lite``), encrypted.

Exit codes: 0 done, 1 error (one ``error: ...`` line), 3 a Pro feature needs an upgrade.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from vendo_license_client import EncryptedStore, LicenseClient, LicenseError, Status

APP_ID = "qoredb-lite"
FREE_SANDBOX_PREVIEWS = 3
UPGRADE = "Pro feature: get a license at https://qoredb.example/pricing, then `qoredb_lite.py activate KEY`."
NEEDS_UPGRADE = 3


class AppError(Exception):
    """One line for the user; ``code`` is machine-readable (a license code when there is one)."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


def data_dir() -> Path:
    """Where the encrypted license and the preview counter live."""
    return Path(os.environ.get("QOREDB_DATA_DIR") or Path.home() / ".local" / "share" / APP_ID)


def public_keys() -> dict[str, str]:
    """The verifying keys shipped with the app."""
    path = Path(os.environ.get("QOREDB_PUBLIC_KEYS") or Path(__file__).with_name("public_keys.json"))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise AppError(f"cannot read the public keys at {path}: run `vendo license export-public-key > {path}`") from None


def license_client() -> LicenseClient:
    """The app's license, stored encrypted in :func:`data_dir`."""
    return LicenseClient(public_keys(), app_id=APP_ID, store_path=data_dir() / "license.bin")


def _post(server: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(server.rstrip("/") + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError):
            raise AppError(f"the license server answered {exc.code}") from None
        raise AppError(f"{error['code']}: {error['message']}", error["code"]) from None
    except (urllib.error.URLError, OSError) as exc:
        raise AppError(f"cannot reach the license server {server}: {exc}", "offline") from None


def activate_from_key(key: str, server: str, client: LicenseClient | None = None) -> Status:
    """Activate ``key`` on this machine against the license service at ``server``: the server
    counts the machine and returns a signed license file; both are verified offline and
    stored encrypted; the current revocation list is kept too.

    :raises AppError: with the license code (``malformed_key``, ``activation_limit``...).
    """
    client = client or license_client()
    answer = _post(server, "/api/v1/licenses/activate", {"key": key.strip(), "machine": client.machine,
                                                         "name": os.uname().nodename if hasattr(os, "uname") else ""})
    try:
        status = client.activate(key, answer["license_file"])
        client.install_revocation_list(_post(server, "/api/v1/licenses/revocations")["revocation_list"])
    except LicenseError as exc:
        raise AppError(f"{exc.code}: {exc.message}", exc.code) from None
    return status


def refresh(server: str, client: LicenseClient | None = None) -> Status | None:
    """Online refresh: the revocation list first (a revoked license cannot refresh), then a
    new license file for the stored key."""
    client = client or license_client()
    try:
        client.install_revocation_list(_post(server, "/api/v1/licenses/revocations")["revocation_list"])
    except LicenseError as exc:
        raise AppError(f"{exc.code}: {exc.message}", exc.code) from None
    key = client.stored_key()
    if key is None:
        return None
    status = client.status()
    if status is not None and status.code == "revoked":
        return status
    return activate_from_key(key, server, client)


def describe(status: Status | None) -> str:
    """The license line of ``status``."""
    if status is None:
        return "Core (free): no license activated"
    if not status.valid:
        return f"Core (free): license {status.code}: {status.reason}"
    until = f" until {status.expires_at:%Y-%m-%d}" if status.expires_at else " (perpetual)"
    grace = f" [{status.reason}]" if status.in_grace else ""
    return f"{status.tier.capitalize()}{until}: {', '.join(sorted(status.features)) or 'no features'}{grace}"


def _previews() -> EncryptedStore:
    return EncryptedStore(data_dir() / "previews.bin", APP_ID)


def sandbox(statement: str) -> str:
    """Pro, with a free preview of :data:`FREE_SANDBOX_PREVIEWS` changes."""
    if license_client().is_feature_enabled("sandbox_changes"):
        return f"sandbox: applied {statement!r} to the sandbox (Pro)"
    store = _previews()
    try:
        used = (store.read() or {}).get("sandbox", 0)
    except ValueError:
        used = FREE_SANDBOX_PREVIEWS  # an altered counter ends the preview
    if used >= FREE_SANDBOX_PREVIEWS:
        raise AppError(f"the {FREE_SANDBOX_PREVIEWS} free sandbox changes are used. {UPGRADE}", "upgrade")
    store.write({"sandbox": used + 1})
    return f"sandbox: applied {statement!r} (free preview {used + 1} of {FREE_SANDBOX_PREVIEWS})"


def pro(feature: str, output: str) -> str:
    """A Pro feature: the output, or the upgrade prompt."""
    if not license_client().is_feature_enabled(feature):
        status = license_client().status()
        why = f" (license {status.code}: {status.reason})" if status is not None and not status.valid else ""
        raise AppError(f"{UPGRADE}{why}", "upgrade")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qoredb_lite.py", description="QoreDB Lite (open core demo)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status")
    commands.add_parser("query").add_argument("sql")
    commands.add_parser("sandbox").add_argument("sql")
    commands.add_parser("er-diagram")
    commands.add_parser("visual-diff")
    for name in ("activate", "refresh", "deactivate"):
        sub = commands.add_parser(name)
        if name == "activate":
            sub.add_argument("key")
        sub.add_argument("--server", default=os.environ.get("QOREDB_LICENSE_SERVER", "http://127.0.0.1:8000"))
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            print(describe(license_client().status()))
        elif args.command == "query":
            print(f"query: ran {args.sql!r} (Core)")
        elif args.command == "sandbox":
            print(sandbox(args.sql))
        elif args.command == "er-diagram":
            print(pro("er_diagram", "er-diagram: users 1--* orders (Pro)"))
        elif args.command == "visual-diff":
            print(pro("visual_diff", "visual-diff: 2 rows differ (Pro)"))
        elif args.command == "activate":
            print("activated: " + describe(activate_from_key(args.key, args.server)))
        elif args.command == "refresh":
            print("refreshed: " + describe(refresh(args.server)))
        elif args.command == "deactivate":
            client = license_client()
            key = client.stored_key()
            if key is not None:
                _post(args.server, "/api/v1/licenses/deactivate", {"key": key, "machine": client.machine})
            client.deactivate()
            print("deactivated: back to Core")
    except AppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NEEDS_UPGRADE if exc.code == "upgrade" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

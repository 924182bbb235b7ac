"""Fixtures of vendo-auth-oidc's tests.

- Storage tests run twice: on SQLite and on PostgreSQL (``VENDO_TEST_DATABASE_URL``, default
  ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), each PostgreSQL test in a schema of its
  own; without PostgreSQL those variants are skipped locally and fail in CI (``CI`` set).
- ``oidc_provider``: a real, certified OpenID provider (npm ``oidc-provider``) on a loopback
  port for the whole session. Without node/npm it fails in CI and skips locally.
- ``github_standin``: a loopback stand-in for GitHub's OAuth and REST endpoints (GitHub
  itself cannot be reached from tests).
- ``browser``: drives a provider's login and consent pages like a person would, with httpx.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

import vendo_auth_oidc
from vendo.config import load_settings
from vendo.kernel import Kernel

OIDC_PROVIDER_VERSION = "9.13.3"
#: Vendo's public base URL in these tests: the TestClient's own, so provider redirects land on it.
VENDO_BASE = "http://testserver"
CLIENT_ID = "vendo-test"
CLIENT_SECRET = "oidc-test-client-secret-" + "x" * 16
PUBLIC_CLIENT_ID = "vendo-test-public"
GITHUB_CLIENT_ID = "Iv1.standin"
GITHUB_CLIENT_SECRET = "github-standin-secret-" + "y" * 16

# -- the kernel's database fixtures (copied from core/tests/conftest.py) -------------------------


@pytest.fixture
def database_url(vendo_each_database: str) -> str:
    """A fresh, empty database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


# -- kernels and apps with the plugin ---------------------------------------------------------------


class Clock:
    """The machine's time, plus an offset tests can move forward."""

    def __init__(self) -> None:
        from datetime import timedelta

        self.offset = timedelta()

    def __call__(self) -> Any:
        from vendo.db import utcnow

        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    """The kernels' clock (real time unless advanced)."""
    return Clock()


@pytest.fixture
def oidc_kernel(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[Callable[..., Kernel]]:
    """Build loaded, migrated kernels with this plugin and the given ``[auth-oidc]`` settings."""
    from vendo.db import migrations

    made: list[Kernel] = []

    def factory(plugin_settings: dict[str, Any], *, plugins: dict[str, object] | None = None,
                **overrides: Any) -> Kernel:
        """``plugins``: more plugin objects by name, beside this one."""
        values: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "database_url": database_url,
                                  "plugins": {"autoload": False}, "outbox": {"dispatch_in_server": False}}
        values.update(overrides)
        kernel = Kernel(load_settings(overrides=values, plugin_settings={"auth-oidc": plugin_settings}),
                        plugins={"auth-oidc": vendo_auth_oidc, **(plugins or {})}, clock=clock)
        made.append(kernel)
        kernel.load()
        info = kernel.plugin("auth-oidc")
        assert info is not None and info.status == "ok", info.error if info else "not loaded"
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        return kernel

    yield factory
    for kernel in made:
        kernel.close()


@pytest.fixture
def app_client() -> Iterator[Callable[[Kernel], Any]]:
    """``app_client(kernel)``: a started TestClient of ``vendo.create_app(kernel)`` (closed afterwards)."""
    from fastapi.testclient import TestClient

    from vendo import create_app

    clients: list[Any] = []

    def factory(kernel: Kernel) -> Any:
        client = TestClient(create_app(kernel), base_url=VENDO_BASE)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        client.__exit__(None, None, None)


# -- a real OpenID provider on loopback -----------------------------------------------------------------

PROVIDER_SCRIPT = r"""
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const clients = JSON.parse(process.argv[3]);
const issuer = `http://127.0.0.1:${port}`;

// Accounts exist for any login; ids starting with "unverified" have email_verified: false.
const provider = new Provider(issuer, {
  clients,
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.test`,
      email_verified: !id.startsWith('unverified'),
      name: `User ${id}`,
    }),
  }),
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['test-only-cookie-key'] },
});
provider.listen(port, '127.0.0.1', () => { console.log(`listening on ${issuer}`); });
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unavailable(message: str) -> None:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message + " (the OpenID provider tests are mandatory in CI)")
    pytest.skip(message)


@dataclass(frozen=True)
class OidcProvider:
    """The running provider and the client Vendo is registered as."""

    issuer: str
    client_id: str
    client_secret: str
    public_client_id: str = PUBLIC_CLIENT_ID

    def settings(self, name: str = "local", **extra: Any) -> dict[str, Any]:
        """``[auth-oidc]`` settings for a kernel using this provider as ``name``."""
        provider = {"issuer": self.issuer, "client_id": self.client_id, "client_secret": self.client_secret,
                    "scopes": ["openid", "email", "profile"]}
        provider.update(extra.pop("provider", {}))
        return {"redirect_base_url": VENDO_BASE, "providers": {name: provider}, **extra}


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """npm ``oidc-provider`` installed in a temporary directory and run with node on a free
    127.0.0.1 port until the end of the session."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _unavailable("node and npm are needed to run the OpenID provider (npm oidc-provider)")
    directory = tmp_path_factory.mktemp("oidc-provider")
    install = subprocess.run(
        [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund", "--loglevel=error",
         f"oidc-provider@{OIDC_PROVIDER_VERSION}"],
        capture_output=True, text=True, timeout=300,
    )
    if install.returncode != 0:
        _unavailable(f"npm install oidc-provider@{OIDC_PROVIDER_VERSION} failed: "
                     f"{(install.stderr or install.stdout).strip()[-500:]}")
    script = directory / "provider.mjs"
    script.write_text(PROVIDER_SCRIPT)
    port = _free_port()
    redirect_uris = [f"{VENDO_BASE}/api/v1/auth/oidc/{name}/callback" for name in ("local", "other")]
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris,
                "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]},
               {"client_id": PUBLIC_CLIENT_ID, "token_endpoint_auth_method": "none",
                "redirect_uris": [f"{VENDO_BASE}/api/v1/auth/oidc/public/callback"],
                "grant_types": ["authorization_code"], "response_types": ["code"]}]
    log = (directory / "provider.log").open("w")
    process = subprocess.Popen([node, str(script), str(port), json.dumps(clients)], cwd=directory,
                               stdout=log, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.flush()
                pytest.fail(f"the OpenID provider exited ({process.returncode}): "
                            f"{(directory / 'provider.log').read_text()[-1000:]}")
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the OpenID provider did not answer within 30 s")
            time.sleep(0.1)
        yield OidcProvider(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# -- a person in a browser ---------------------------------------------------------------------------------


class _Forms(HTMLParser):
    """The forms of a page: action, method and input values; and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "method": values.get("method", "get").lower(),
                               "inputs": {}})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["inputs"][values["name"]] = values.get("value", "")
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])


@dataclass
class Browser:
    """Follows redirects by hand, fills the provider's login and consent forms, and stops at
    the first redirect to Vendo (returning that URL)."""

    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def authorize(self, authorize_url: str, login: str, *, cancel: bool = False) -> str:
        """Sign in as ``login`` at the provider (or cancel); the redirect back to Vendo."""
        response = self.http.get(authorize_url)
        for _ in range(20):
            if response.status_code in (302, 303):
                location = str(response.url.join(response.headers["location"]))
                if location.startswith(VENDO_BASE):
                    return location
                response = self.http.get(location)
                continue
            assert response.status_code == 200, response.text[:500]
            page = _Forms()
            page.feed(response.text)
            if cancel:
                abort = next(link for link in page.links if link.endswith("/abort"))
                response = self.http.get(str(response.url.join(abort)))
                continue
            form = page.forms[0]
            data = dict(form["inputs"])
            if "login" in data:
                data.update(login=login, password="any password works")
            response = self.http.post(str(response.url.join(form["action"])), data=data)
        raise AssertionError("the provider never redirected back to Vendo")

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A fresh browser (cookie jar) at the provider."""
    instance = Browser()
    yield instance
    instance.close()


# -- a stand-in for GitHub ----------------------------------------------------------------------------------


@dataclass
class GitHubStandIn:
    """A loopback stand-in for GitHub's OAuth endpoints and ``/user``, ``/user/emails``.

    ``users`` maps a login to its ``/user`` body and ``/user/emails`` list; ``next_login``
    says who "signs in" on the next authorization; ``token_error`` makes the token endpoint
    answer GitHub's 200-with-error body.
    """

    base_url: str = ""
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_login: str = ""
    token_error: str | None = None
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add_user(self, login: str, user_id: int, emails: list[dict[str, Any]], name: str = "") -> None:
        self.users[login] = {"user": {"id": user_id, "login": login, "name": name or None, "email": None},
                             "emails": emails}

    def settings(self, name: str = "github", **extra: Any) -> dict[str, Any]:
        return {"redirect_base_url": VENDO_BASE,
                "providers": {name: {"kind": "github", "client_id": GITHUB_CLIENT_ID,
                                     "client_secret": GITHUB_CLIENT_SECRET, "base_url": self.base_url,
                                     "api_base_url": f"{self.base_url}/api"}},
                **extra}


def _standin_handler(standin: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            standin.requests.append(f"GET {parts.path}")
            if parts.path == "/login/oauth/authorize":
                if query.get("client_id") != GITHUB_CLIENT_ID or query.get("code_challenge_method") != "S256":
                    return self._json(400, {"error": "bad authorization request"})
                code = secrets.token_hex(10)
                standin.codes[code] = {"login": standin.next_login, "challenge": query["code_challenge"],
                                       "redirect_uri": query["redirect_uri"]}
                location = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            login = standin.tokens.get(self.headers.get("Authorization", "").partition(" ")[2])
            if login is None:
                return self._json(401, {"message": "Bad credentials"})
            if parts.path == "/api/user":
                return self._json(200, standin.users[login]["user"])
            if parts.path == "/api/user/emails":
                return self._json(200, standin.users[login]["emails"])
            return self._json(404, {"message": "Not Found"})

        def do_POST(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            standin.requests.append(f"POST {parts.path}")
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if parts.path != "/login/oauth/access_token":
                return self._json(404, {"message": "Not Found"})
            if "application/json" not in self.headers.get("Accept", ""):
                return self._json(406, {"message": "the stand-in only answers JSON"})
            if standin.token_error:
                return self._json(200, {"error": standin.token_error, "error_description": "stand-in refusal"})
            grant = standin.codes.pop(form.get("code", ""), None)
            if (form.get("client_id") != GITHUB_CLIENT_ID or form.get("client_secret") != GITHUB_CLIENT_SECRET
                    or grant is None or form.get("redirect_uri") != grant["redirect_uri"]):
                return self._json(200, {"error": "bad_verification_code",
                                        "error_description": "The code passed is incorrect or expired."})
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != grant["challenge"]:
                return self._json(200, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
            token = "gho_" + secrets.token_hex(18)
            standin.tokens[token] = grant["login"]
            return self._json(200, {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"})

    return Handler


@pytest.fixture
def github_standin() -> Iterator[GitHubStandIn]:
    """A GitHub stand-in on a free 127.0.0.1 port for one test."""
    standin = GitHubStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _standin_handler(standin))
    standin.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="github-standin", daemon=True)
    thread.start()
    yield standin
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)

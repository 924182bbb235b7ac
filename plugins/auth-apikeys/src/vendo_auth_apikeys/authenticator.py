"""The ``api_key`` authenticator: ``Authorization: Bearer vk_...`` or ``X-API-Key: vk_...``."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from vendo import Principal
from vendo_auth_apikeys.keys import looks_like_api_key
from vendo_auth_apikeys.service import ApiKeys, invalid_key

#: The header that may carry a key instead of ``Authorization``.
HEADER = "x-api-key"


def credential_of(headers: Any) -> str | None:
    """The API key a request presents, or ``None`` when it presents none (other credentials
    are left to the next authenticator).

    :raises Unauthorized: both headers carry different keys (``invalid_api_key``).
    """
    found: list[str] = []
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and looks_like_api_key(value):
        found.append(value)
    header = (headers.get(HEADER) or "").strip()
    if looks_like_api_key(header):
        found.append(header)
    if not found:
        return None
    if len(set(found)) > 1:
        raise invalid_key()
    return found[0]


class ApiKeyAuthenticator:
    """Turns a request bearing a workspace API key into a :class:`vendo.Principal`.

    The principal's ``subject`` is the key's creator (whose role in the workspace applies),
    ``workspace`` the key's workspace, ``scopes`` the key's scopes, ``method`` ``"api_key"``,
    ``credential`` the key id and ``attributes`` ``rate_limit_tier``, ``key_prefix`` and
    ``environment``. Every refused key gets the same 401 ``invalid_api_key``.
    """

    def __init__(self, service: ApiKeys) -> None:
        self.service = service

    async def authenticate(self, request: Any) -> Principal | None:
        """A principal for a usable key, ``None`` when the request carries no API key.

        The database read runs in a worker thread, so the event loop never waits on it.

        :raises Unauthorized: ``invalid_api_key``.
        """
        token = credential_of(request.headers)
        if token is None:
            return None
        return await anyio.to_thread.run_sync(self.service.verify, token)

    def authenticate_sync(self, request: Any) -> Principal | None:
        """:meth:`authenticate` for callers without an event loop (scripts, benchmarks)."""
        token = credential_of(request.headers)
        if token is None:
            return None
        return self.service.verify(token)

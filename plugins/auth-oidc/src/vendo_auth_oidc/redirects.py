"""``?next=``: where the browser goes after signing in, carrying the tokens in the URL fragment.

Only origins listed in ``allowed_redirect_origins`` are accepted (an open redirect carrying
tokens would hand them to anyone). A relative ``next`` is resolved against
``redirect_base_url``, so it is accepted when Vendo's own origin is listed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from vendo_auth_oidc import errors
from vendo_auth_oidc.settings import normalize_origin

MAX_LENGTH = 2048


def check_next(next_url: str | None, *, base_url: str, allowed_origins: Collection[str]) -> str | None:
    """The absolute URL to send the browser to, or ``None`` when ``next`` is not set.

    :raises InvalidInput: ``invalid_redirect`` (400) for any URL off the allow-list.
    """
    if next_url is None or next_url == "":
        return None
    if len(next_url) > MAX_LENGTH:
        raise errors.invalid_redirect(f"longer than {MAX_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in next_url) or "\\" in next_url:
        raise errors.invalid_redirect("it contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(urljoin(base_url + "/", next_url))
        hostname = parts.hostname
    except ValueError:
        raise errors.invalid_redirect("malformed URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise errors.invalid_redirect("only http(s) URLs are accepted")
    if parts.username is not None or parts.password is not None:
        raise errors.invalid_redirect("URLs with credentials are refused")
    try:
        origin = normalize_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        raise errors.invalid_redirect("the URL's host or port is malformed") from None
    if origin not in allowed_origins:
        raise errors.invalid_redirect(f"origin {origin[:200]} is not in allowed_redirect_origins")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def with_fragment(url: str, values: Mapping[str, object]) -> str:
    """``url`` with ``values`` form-encoded as its fragment (replacing any fragment it had)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query,
                       urlencode({key: str(value) for key, value in values.items()})))

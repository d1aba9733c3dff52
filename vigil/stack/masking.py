"""Printing connection URLs without their credentials.

A password in a URL is often written unescaped (`postgresql://app:pa/ss#w@rd@db/app`), which a standard URL
parser splits at the first `/`, `?` or `#` and then shows the rest as host, path or fragment. So the userinfo
here is everything between `scheme://` and the *last* `@`: a password cannot extend past it, and whatever
stands before it is hidden except a plain user name. Query parameters whose names speak of credentials are
hidden too, and so is a fragment, which no database URL needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode

MASK = "***"
SECRET_PARAMETER_WORDS = ("password", "passfile", "secret", "token", "key")
"""A query parameter whose name contains one of these is a credential (password, sslpassword, sslkey, …)."""
_PLAIN_USER = re.compile(r"[\w.+~%-]*")  # no / ? # = & : ; a "user name" holding those is not one


def is_secret_parameter(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_PARAMETER_WORDS)


@dataclass(frozen=True)
class _Parts:
    """`url` cut by hand: scheme://[userinfo@]rest[?query][#fragment]."""

    scheme: str
    userinfo: str | None
    rest: str
    query: str | None
    fragment: str | None


def _split(url: str) -> _Parts | None:
    scheme, sep, after = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return None
    userinfo: str | None = None
    if "@" in after:
        userinfo, _, after = after.rpartition("@")
    after, hashmark, fragment = after.partition("#")
    rest, question, query = after.partition("?")
    return _Parts(scheme, userinfo, rest, query if question else None, fragment if hashmark else None)


def _mask_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    if not _PLAIN_USER.fullmatch(user):
        return MASK
    return f"{user}:{MASK}" if colon else user


def _mask_query(query: str) -> str:
    pairs = [(name, MASK if is_secret_parameter(name) else value) for name, value in parse_qsl(query, True)]
    return urlencode(pairs, safe="/*")


def mask_url(url: str) -> str:
    """`url` with every credential shown as ***: the userinfo password, the values of query parameters such
    as `password`, `sslpassword`, `sslkey`, `passfile` or `api_token`, and any fragment. Not a URL: ***."""
    parts = _split(url)
    if parts is None:
        return MASK
    masked = f"{parts.scheme}://"
    if parts.userinfo is not None:
        masked += f"{_mask_userinfo(parts.userinfo)}@"
    masked += parts.rest
    if parts.query is not None:
        masked += f"?{_mask_query(parts.query)}"
    if parts.fragment is not None:
        masked += f"#{MASK}"
    return masked


def url_secrets(url: str) -> list[str]:
    """The credential substrings of `url` (raw and percent-decoded), for `redact`; all of it when it is not a
    URL."""
    parts = _split(url)
    if parts is None:
        return [url]
    found: list[str] = []
    if parts.userinfo is not None:
        user, colon, password = parts.userinfo.partition(":")
        if not _PLAIN_USER.fullmatch(user):
            found.append(parts.userinfo)
        elif colon:
            found.append(password)
    if parts.query is not None:
        for field in parts.query.split("&"):
            name, _, value = field.partition("=")
            if is_secret_parameter(unquote(name)):
                found.append(value)
    if parts.fragment is not None:
        found.append(parts.fragment)
    return [variant for secret in found if secret for variant in {secret, unquote(secret)}]


def redact(text: str, url: str) -> str:
    """`text` (an error message, say) with every credential of `url` in it replaced by ***."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text

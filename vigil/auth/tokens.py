"""API tokens: `vgl_<id>_<secret>`. The id (12 hex digits) finds the token's record without scanning hashes;
the record holds the sha256 of the whole token, compared in constant time. The secret has 256 bits, so a fast
hash is enough (nothing to brute-force, unlike a password)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "vgl_"
_TOKEN = re.compile(r"^vgl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedToken:
    id: str
    token: str
    sha256: str


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token() -> IssuedToken:
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return IssuedToken(id=token_id, token=token, sha256=token_sha256(token))


def token_id_of(token: str) -> str | None:
    """The id of a well-formed user API token, else None (another kind of token, or junk)."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def looks_like_user_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)

"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile: 64 MiB, 3 passes)."""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vigil.auth.models import AuthError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

_HASHER = PasswordHasher()


def check_password_rules(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AuthError(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(check_password_rules(password))


@cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches. Without a hash (unknown user, no password) a dummy hash is verified all the
    same, so the answer takes as long and timing does not tell whether a user exists."""
    if len(password) > MAX_PASSWORD_LENGTH:
        password = password[:MAX_PASSWORD_LENGTH]  # bounded work; such a password never matches a stored one
        password_hash = None
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password for generated accounts (144 bits, URL-safe)."""
    return secrets.token_urlsafe(18)

"""The users file's contents: users with a role, a password hash and API-token hashes. Nothing here is a secret
in clear: passwords are argon2 hashes, API tokens sha256 hashes of random tokens."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vigil.auth.roles import Role

USER_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
TOKEN_ID_PATTERN = r"^[0-9a-f]{12}$"
_USER_NAME = re.compile(USER_NAME_PATTERN)

UserName = Annotated[str, StringConstraints(pattern=USER_NAME_PATTERN)]


class AuthError(Exception):
    """A user-fixable problem with users, passwords or tokens; the message says what and how to fix it."""


class UsersFileError(AuthError):
    """The users file cannot be read or is not a valid users file."""


def check_user_name(name: str) -> str:
    """`name` when it is a valid user name, else an `AuthError` saying what a name may hold."""
    if not _USER_NAME.fullmatch(name):
        raise AuthError(
            f"invalid user name {name[:80]!r}: 1-64 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _now() -> datetime:
    return datetime.now(UTC)


class ApiTokenRecord(BaseModel):
    """One API token of a user: only its sha256 hash is kept; the token itself was shown once."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=TOKEN_ID_PATTERN)]
    label: Annotated[str, StringConstraints(max_length=200)] = ""
    created_at: datetime = Field(default_factory=_now)
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class User(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: UserName
    role: Role
    password_hash: str | None = Field(default=None, description="argon2id hash; None: no password sign-in.")
    disabled: bool = False
    created_at: datetime = Field(default_factory=_now)
    tokens: list[ApiTokenRecord] = Field(default_factory=list)


class UsersDocument(BaseModel):
    """The whole users file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    users: list[User] = Field(default_factory=list)

    def find(self, name: str) -> User | None:
        return next((user for user in self.users if user.name == name), None)


class TokenSummary(BaseModel):
    """What may be shown of an API token: its id and label, never its hash."""

    id: str
    label: str
    created_at: datetime


class UserSummary(BaseModel):
    """What `vigil user list` and an admin page may show of a user: never a hash."""

    name: str
    role: Role
    disabled: bool
    has_password: bool
    tokens: list[TokenSummary]
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserSummary:
        return cls(
            name=user.name,
            role=user.role,
            disabled=user.disabled,
            has_password=user.password_hash is not None,
            tokens=[TokenSummary(id=t.id, label=t.label, created_at=t.created_at) for t in user.tokens],
            created_at=user.created_at,
        )

"""`UserDirectory`: the users file as the console, the API and `vigil user ...` see it.

Reads are cached and re-done when the file changes (its inode, size or mtime), so `vigil user add` takes effect
in a running console or API without a restart; every change is a locked read-modify-write, written atomically
with mode 0600. A missing file is a directory without users.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from vigil.auth.models import (
    ApiTokenRecord,
    AuthError,
    User,
    UsersDocument,
    UsersFileError,
    UserSummary,
    check_user_name,
)
from vigil.auth.passwords import hash_password, verify_password
from vigil.auth.roles import Role
from vigil.auth.secrets_file import exclusive_lock, write_private_atomically
from vigil.auth.tokens import issue_token, token_id_of, token_sha256
from vigil.settings import Settings

_Signature = tuple[int, int, int]
MAX_TOKEN_LABEL = 200


@dataclass(frozen=True)
class _Snapshot:
    signature: _Signature | None
    document: UsersDocument
    tokens: dict[str, tuple[User, ApiTokenRecord]]


def _index(document: UsersDocument) -> dict[str, tuple[User, ApiTokenRecord]]:
    return {token.id: (user, token) for user in document.users for token in user.tokens}


class UserDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._snapshot: _Snapshot | None = None

    @classmethod
    def of(cls, settings: Settings) -> UserDirectory:
        return cls(settings.users_path)

    # Reading

    def _signature(self) -> _Signature | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsersFileError(f"cannot read the users file {self.path}: {exc.strerror}") from exc
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _read(self) -> UsersDocument:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return UsersDocument()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsersFileError(f"cannot read the users file {self.path}: {exc}") from exc
        try:
            document = UsersDocument.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the file"
            raise UsersFileError(
                f"the users file {self.path} is corrupt ({where}: {first['msg']}); restore it from a backup or "
                "remove it and add the users again"
            ) from None
        names = [user.name for user in document.users]
        if len(set(names)) != len(names):
            raise UsersFileError(f"the users file {self.path} names a user twice")
        return document

    def _current(self) -> _Snapshot:
        signature = self._signature()
        snapshot = self._snapshot
        if snapshot is None or snapshot.signature != signature or signature is None:
            document = self._read()
            snapshot = _Snapshot(signature, document, _index(document))
            self._snapshot = snapshot
        return snapshot

    def document(self) -> UsersDocument:
        """The users file as it is now (a copy: changing it changes nothing)."""
        return self._current().document.model_copy(deep=True)

    def get(self, name: str) -> User | None:
        user = self._current().document.find(name)
        return None if user is None else user.model_copy(deep=True)

    def list_users(self) -> list[UserSummary]:
        return [UserSummary.of(user) for user in self._current().document.users]

    def has_users(self) -> bool:
        return bool(self._current().document.users)

    def has_api_tokens(self) -> bool:
        """True when any user holds an API token: then the REST API requires a token on every protected route."""
        return bool(self._current().tokens)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when `name` and `password` match an enabled user with a password, else None. Takes an argon2
        verification (tens of milliseconds) whether or not the user exists: call it off the event loop."""
        user = self._current().document.find(name)
        usable = user is not None and not user.disabled
        matches = verify_password(user.password_hash if usable and user is not None else None, password)
        return user.model_copy(deep=True) if matches and usable and user is not None else None

    def user_for_token(self, token: str) -> User | None:
        """The enabled user owning API token `token`, else None. The token's id finds its record; the hash is
        compared in constant time."""
        token_id = token_id_of(token)
        if token_id is None:
            return None
        found = self._current().tokens.get(token_id)
        if found is None:
            return None
        user, record = found
        if not hmac.compare_digest(token_sha256(token), record.sha256) or user.disabled:
            return None
        return user.model_copy(deep=True)

    # Changing

    def _change(self, change: Callable[[UsersDocument], None]) -> None:
        with exclusive_lock(self.path):
            document = self._read()
            change(document)
            write_private_atomically(self.path, document.model_dump_json(indent=2) + "\n")
        self._snapshot = None

    @staticmethod
    def _require(document: UsersDocument, name: str) -> User:
        user = document.find(name)
        if user is None:
            raise AuthError(f"no user {name!r}")
        return user

    @staticmethod
    def _keep_an_admin(document: UsersDocument, without: str) -> None:
        if not any(u.role is Role.ADMIN and not u.disabled and u.name != without for u in document.users):
            raise AuthError(f"{without!r} is the last admin; make another user admin first")

    def add(self, name: str, role: Role, password: str | None) -> User:
        """A new user; `password` None: API tokens only (no console sign-in by password)."""
        check_user_name(name)
        password_hash = None if password is None else hash_password(password)
        user = User(name=name, role=role, password_hash=password_hash)

        def change(document: UsersDocument) -> None:
            if document.find(name) is not None:
                raise AuthError(f"user {name!r} already exists")
            document.users.append(user)

        self._change(change)
        return user

    def remove(self, name: str) -> None:
        def change(document: UsersDocument) -> None:
            user = self._require(document, name)
            if user.role is Role.ADMIN:
                self._keep_an_admin(document, name)
            document.users.remove(user)

        self._change(change)

    def set_password(self, name: str, password: str) -> None:
        password_hash = hash_password(password)
        self._change(lambda document: setattr(self._require(document, name), "password_hash", password_hash))

    def set_role(self, name: str, role: Role) -> None:
        def change(document: UsersDocument) -> None:
            user = self._require(document, name)
            if user.role is Role.ADMIN and role is not Role.ADMIN:
                self._keep_an_admin(document, name)
            user.role = role

        self._change(change)

    def set_disabled(self, name: str, disabled: bool) -> None:
        def change(document: UsersDocument) -> None:
            user = self._require(document, name)
            if disabled and user.role is Role.ADMIN:
                self._keep_an_admin(document, name)
            user.disabled = disabled

        self._change(change)

    def issue_token(self, name: str, label: str = "") -> tuple[ApiTokenRecord, str]:
        """A new API token of `name`: its record, and the token itself, which is stored nowhere (show it once)."""
        if len(label) > MAX_TOKEN_LABEL:
            raise AuthError(f"the token label is too long: at most {MAX_TOKEN_LABEL} characters")
        issued = issue_token()
        record = ApiTokenRecord(id=issued.id, label=label, sha256=issued.sha256)
        self._change(lambda document: self._require(document, name).tokens.append(record))
        return record, issued.token

    def revoke_token(self, name: str, token_id: str) -> None:
        def change(document: UsersDocument) -> None:
            user = self._require(document, name)
            kept = [token for token in user.tokens if token.id != token_id]
            if len(kept) == len(user.tokens):
                raise AuthError(f"user {name!r} has no API token {token_id!r} (`vigil user list` shows the ids)")
            user.tokens = kept

        self._change(change)

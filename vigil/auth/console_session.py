"""What the console needs for sign-in sessions; no NiceGUI import here (the console imports NiceGUI itself).

How the console keeps the signed-in user:

* `ui.run(..., storage_secret=storage_secret(settings), session_middleware_kwargs=session_cookie_options(settings))`:
  NiceGUI's `app.storage.user` is then server-side storage keyed by a signed session cookie (HttpOnly,
  SameSite=Lax; Secure when VIGIL_CONSOLE_SECURE_COOKIES is set, which it should be behind TLS).
* Sign-in by password: `user = await asyncio.to_thread(directory.authenticate, name, password)` (argon2 takes
  tens of milliseconds: keep it off the event loop); on success `app.storage.user.update(session_values(...))`,
  i.e. the keys `user` (the name) and `role` (the role's value), plus `source` (`local` or `oidc`). On failure
  show one message for every cause ("wrong user name or password"): never say which part was wrong.
* Sign-in by OIDC: see `vigil.auth.oidc` (`start_sign_in` keeps its `PendingSignIn` in the storage until the
  callback; `finish_sign_in` returns an `OidcIdentity` to store the same way, with source `oidc`).
* Every page: `signed_in(app.storage.user, directory)` -> `SignedIn | None`. For local users it re-reads the
  users file, so a removed or disabled user is signed out and a role change applies on the next page.
* Sign-out: `app.storage.user.clear()`.

Nothing secret goes into the storage or a page: no password, no hash, no token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vigil.auth.directory import UserDirectory
from vigil.auth.models import UsersFileError
from vigil.auth.roles import Role
from vigil.auth.secrets_file import read_or_create_secret
from vigil.settings import Settings

CONSOLE_SECRET_FILE = "console-secret"
SESSION_MAX_AGE_SECONDS = 12 * 3600
"""A console session cookie lasts a working shift; then sign in again."""

Source = Literal["local", "oidc"]


@dataclass(frozen=True)
class SignedIn:
    name: str
    role: Role
    source: Source


def storage_secret(settings: Settings) -> str:
    """The key that signs the console's session cookie: VIGIL_CONSOLE_SECRET, else one generated once into
    `<state_dir>/console-secret` (0600), so sessions survive a console restart."""
    if settings.console_secret is not None:
        return settings.console_secret.get_secret_value()
    return read_or_create_secret(settings.state_dir / CONSOLE_SECRET_FILE)


def secure_cookies(settings: Settings) -> bool:
    return settings.console_secure_cookies


def session_cookie_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of Starlette's SessionMiddleware (NiceGUI's `session_middleware_kwargs`)."""
    return {"https_only": secure_cookies(settings), "same_site": "lax", "max_age": SESSION_MAX_AGE_SECONDS}


def session_values(name: str, role: Role, source: Source = "local") -> dict[str, str]:
    """What the console stores in `app.storage.user` at sign-in."""
    return {"user": name, "role": role.value, "source": source}


def signed_in(storage: Mapping[str, Any], directory: UserDirectory) -> SignedIn | None:
    """Who the session belongs to now, or None (not signed in, or no longer allowed).

    A local user is looked up again: removed or disabled -> None; the role is the file's current one. An OIDC
    user keeps the role the provider gave at sign-in (until the session ends). An unreadable users file signs
    local users out rather than trusting a stale role."""
    name, role, source = storage.get("user"), storage.get("role"), storage.get("source", "local")
    if not isinstance(name, str) or role not in {r.value for r in Role}:
        return None
    if source == "oidc":
        return SignedIn(name=name, role=Role(role), source="oidc")
    if source != "local":
        return None
    try:
        user = directory.get(name)
    except UsersFileError:
        return None
    if user is None or user.disabled:
        return None
    return SignedIn(name=user.name, role=user.role, source="local")

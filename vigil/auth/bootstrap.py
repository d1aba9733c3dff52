"""The first admin: without any user (and without OIDC), `vigil up` creates `admin` with a generated password,
written to `<state_dir>/admin-password` (0600) and never printed."""

from __future__ import annotations

import os
from pathlib import Path

from vigil.auth.directory import UserDirectory
from vigil.auth.passwords import generate_password
from vigil.auth.roles import Role
from vigil.auth.secrets_file import exclusive_lock, write_private_atomically
from vigil.settings import Settings

ADMIN_NAME = "admin"
ADMIN_PASSWORD_FILE = "admin-password"


def admin_password_path(settings: Settings) -> Path:
    return settings.state_dir / ADMIN_PASSWORD_FILE


def ensure_admin(settings: Settings) -> Path | None:
    """Create the first admin when the users file has no user and OIDC is off; return the password file.

    Idempotent: with users already there it creates nothing, and returns the password file only while it still
    holds the password of an enabled `admin` (so `vigil up` can say where it is), else None. The password file
    is written before the user, so a crash between the two leaves no admin nobody can sign in as."""
    directory = UserDirectory.of(settings)
    path = admin_password_path(settings)
    with exclusive_lock(path):  # two `vigil up` at once: one creates, the other then finds the user
        if directory.has_users():
            return path if _still_valid(directory, path) else None
        if settings.oidc_enabled:
            return None
        password = generate_password()
        write_private_atomically(path, password + "\n")
        directory.add(ADMIN_NAME, Role.ADMIN, password)
        return path


def _still_valid(directory: UserDirectory, path: Path) -> bool:
    try:
        if os.stat(path).st_mode & 0o077:
            return False  # someone loosened it: better to say nothing than to point at a readable secret
        password = path.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return bool(password) and directory.authenticate(ADMIN_NAME, password) is not None

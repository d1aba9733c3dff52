"""`vigil user ...`: local users of the console and the REST API, in the users file (VIGIL_USERS_FILE).

Passwords come from a prompt (asked twice) or from stdin with `--password-stdin`, never from an argument (that
would land in the shell history and in `ps`). Changes take effect in a running console and API at once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vigil.auth.directory import UserDirectory
from vigil.auth.models import AuthError
from vigil.auth.passwords import check_password_rules
from vigil.auth.roles import Role
from vigil.settings import get_settings

user_app = typer.Typer(no_args_is_help=True, help="Users of the console and the REST API (roles, passwords, tokens).")

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin (no prompt).")
]


@contextmanager
def _directory() -> Iterator[UserDirectory]:
    """The users file of the current settings; a user-fixable problem exits 1 with its message."""
    try:
        yield UserDirectory.of(get_settings())
    except AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return check_password_rules(password)
    except AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@user_app.command("add")
def add(
    name: str,
    role: Annotated[Role, typer.Option("--role", help="viewer reads, responder acts, admin also manages.")],
    password_stdin: PasswordStdin = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No console sign-in by password (API tokens only).")
    ] = False,
) -> None:
    """Add a user with a role and a password."""
    with _directory() as directory:
        if directory.get(name) is not None:
            raise AuthError(f"user {name!r} already exists")
        password = None if no_password else _read_password(password_stdin)
        directory.add(name, role, password)
    typer.echo(f"added {name} ({role.value}) to {directory.path}")


@user_app.command("list")
def list_users() -> None:
    """Users, their roles and API token ids (never a hash)."""
    with _directory() as directory:
        users = directory.list_users()
    if not users:
        typer.echo(f"no users in {directory.path}")
        return
    table = Table(title=str(directory.path), title_justify="left")
    for column in ("name", "role", "password", "state", "tokens"):
        table.add_column(column)
    for user in users:
        tokens = ", ".join(f"{t.id} {t.label}".strip() for t in user.tokens)
        table.add_row(
            user.name,
            user.role.value,
            "set" if user.has_password else "none",
            "disabled" if user.disabled else "enabled",
            f"{len(user.tokens)}" + (f" ({tokens})" if tokens else ""),
        )
    Console(width=200).print(table)


@user_app.command("remove")
def remove(name: str) -> None:
    """Remove a user (and its API tokens)."""
    with _directory() as directory:
        directory.remove(name)
    typer.echo(f"removed {name}")


@user_app.command("passwd")
def passwd(name: str, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password."""
    with _directory() as directory:
        if directory.get(name) is None:
            raise AuthError(f"no user {name!r}")
        directory.set_password(name, _read_password(password_stdin))
    typer.echo(f"password of {name} changed")


@user_app.command("role")
def role(name: str, new_role: Annotated[Role, typer.Argument(metavar="ROLE")]) -> None:
    """Change a user's role (viewer, responder, admin)."""
    with _directory() as directory:
        directory.set_role(name, new_role)
    typer.echo(f"{name} is now {new_role.value}")


@user_app.command("disable")
def disable(name: str) -> None:
    """Refuse a user's password and tokens until enabled again (console sessions end on their next page)."""
    with _directory() as directory:
        directory.set_disabled(name, True)
    typer.echo(f"{name} is disabled")


@user_app.command("enable")
def enable(name: str) -> None:
    """Enable a disabled user."""
    with _directory() as directory:
        directory.set_disabled(name, False)
    typer.echo(f"{name} is enabled")


@user_app.command("token")
def token(
    name: str,
    label: Annotated[str, typer.Option("--label", help="What the token is for (shown by `vigil user list`).")] = "",
    revoke: Annotated[str | None, typer.Option("--revoke", metavar="ID", help="Revoke the token with this id.")] = None,
) -> None:
    """Issue an API token for a user (printed once, stored only as a hash), or revoke one with --revoke ID."""
    settings = get_settings()
    with _directory() as directory:
        if revoke is not None:
            directory.revoke_token(name, revoke)
            typer.echo(f"revoked token {revoke} of {name}")
            return
        record, secret = directory.issue_token(name, label)
    typer.echo(secret)
    typer.echo(f"token {record.id} of {name}: shown once, only its hash is kept", err=True)
    if settings.api_token is None:
        typer.echo(
            "note: with a user API token the REST API requires a token on every route; set VIGIL_API_TOKEN too so "
            "Alertmanager, toyprod and log shippers started by `vigil up` keep being accepted",
            err=True,
        )

"""Users, passwords, API tokens, the first admin and console-session helpers (`vigil.auth`), and `vigil user`."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from vigil.auth import passwords
from vigil.auth.bootstrap import ADMIN_NAME, admin_password_path, ensure_admin
from vigil.auth.console_session import (
    session_cookie_options,
    session_values,
    signed_in,
    storage_secret,
)
from vigil.auth.directory import UserDirectory
from vigil.auth.models import AuthError, UsersFileError
from vigil.auth.roles import Role
from vigil.cli import app
from vigil.settings import Settings

PASSWORD = "correct horse battery"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def directory(tmp_path: Path) -> UserDirectory:
    return UserDirectory(tmp_path / "state" / "users.json")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: a file that ends up 0600 was created 0600, not narrowed by the umask."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_role_order() -> None:
    assert Role.ADMIN.may(Role.RESPONDER)
    assert Role.ADMIN.may(Role.VIEWER)
    assert Role.RESPONDER.may(Role.RESPONDER)
    assert not Role.RESPONDER.may(Role.ADMIN)
    assert Role.VIEWER.may(Role.VIEWER)
    assert not Role.VIEWER.may(Role.RESPONDER)


def test_add_list_remove_and_the_file_holds_no_secret(directory: UserDirectory, open_umask: None) -> None:
    assert directory.list_users() == []
    directory.add("ana", Role.RESPONDER, PASSWORD)
    directory.add("bob.ops", Role.VIEWER, None)
    assert [(u.name, u.role, u.has_password) for u in directory.list_users()] == [
        ("ana", Role.RESPONDER, True),
        ("bob.ops", Role.VIEWER, False),
    ]
    assert mode(directory.path) == 0o600
    text = directory.path.read_text()
    assert PASSWORD not in text
    stored = json.loads(text)["users"][0]["password_hash"]
    assert stored.startswith("$argon2id$")
    assert "hash" not in directory.list_users()[0].model_dump_json()  # summaries never carry a hash

    directory.remove("bob.ops")
    assert [u.name for u in directory.list_users()] == ["ana"]
    assert sorted(p.name for p in directory.path.parent.iterdir()) == [".users.json.lock", "users.json"]


def test_password_check(directory: UserDirectory) -> None:
    directory.add("ana", Role.RESPONDER, PASSWORD)
    user = directory.authenticate("ana", PASSWORD)
    assert user is not None
    assert user.name == "ana"
    assert user.role is Role.RESPONDER
    assert directory.authenticate("ana", PASSWORD + "!") is None
    assert directory.authenticate("ana", "") is None
    assert directory.authenticate("ana", "x" * 5000) is None

    passwords._dummy_hash.cache_clear()
    assert directory.authenticate("nobody", PASSWORD) is None
    # an unknown user costs an argon2 verification too (against a dummy hash), so timing shows nothing
    assert passwords._dummy_hash.cache_info().misses == 1

    directory.set_password("ana", "another password")
    assert directory.authenticate("ana", PASSWORD) is None
    assert directory.authenticate("ana", "another password") is not None

    directory.add("admin2", Role.ADMIN, PASSWORD)
    directory.set_disabled("ana", True)
    assert directory.authenticate("ana", "another password") is None
    directory.set_disabled("ana", False)
    assert directory.authenticate("ana", "another password") is not None


def test_bad_input_is_refused_with_a_clear_error(directory: UserDirectory) -> None:
    for name in ("Ana", "", "-ana", "a b", "ana/..", "x" * 65, "ана"):
        with pytest.raises(AuthError, match="invalid user name"):
            directory.add(name, Role.VIEWER, PASSWORD)
    with pytest.raises(AuthError, match="too short"):
        directory.add("ana", Role.VIEWER, "short")
    directory.add("ana", Role.VIEWER, PASSWORD)
    with pytest.raises(AuthError, match="already exists"):
        directory.add("ana", Role.ADMIN, PASSWORD)
    calls: list[Callable[[], object]] = [
        lambda: directory.remove("nobody"),
        lambda: directory.set_role("nobody", Role.ADMIN),
        lambda: directory.set_password("nobody", PASSWORD),
        lambda: directory.issue_token("nobody"),
    ]
    for call in calls:
        with pytest.raises(AuthError, match="no user 'nobody'"):
            call()
    with pytest.raises(AuthError, match="no API token"):
        directory.revoke_token("ana", "0123456789ab")
    with pytest.raises(AuthError, match="label is too long"):
        directory.issue_token("ana", "x" * 201)


def test_the_last_admin_stays(directory: UserDirectory) -> None:
    directory.add("root", Role.ADMIN, PASSWORD)
    calls: list[Callable[[], object]] = [
        lambda: directory.remove("root"),
        lambda: directory.set_role("root", Role.VIEWER),
        lambda: directory.set_disabled("root", True),
    ]
    for call in calls:
        with pytest.raises(AuthError, match="last admin"):
            call()
    directory.add("second", Role.ADMIN, PASSWORD)
    directory.set_role("root", Role.VIEWER)
    root = directory.get("root")
    assert root is not None
    assert root.role is Role.VIEWER


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is corrupt"),
        ('{"users": [{"name": "ana"}]}', r"is corrupt \(users\.0\.role"),
        ('{"users": [{"name": "Bad Name", "role": "viewer"}]}', r"is corrupt \(users\.0\.name"),
        ('{"users": [{"name": "ana", "role": "owner"}]}', "is corrupt"),
        ('{"users": [{"name": "a", "role": "viewer"}, {"name": "a", "role": "admin"}]}', "names a user twice"),
        ("[]", "is corrupt"),
    ],
)
def test_a_corrupt_file_is_a_clear_error_and_is_left_alone(
    directory: UserDirectory, content: str, message: str
) -> None:
    directory.path.parent.mkdir(parents=True)
    directory.path.write_text(content)
    with pytest.raises(UsersFileError, match=message):
        directory.list_users()
    with pytest.raises(UsersFileError, match=message):
        directory.add("ana", Role.VIEWER, PASSWORD)
    assert directory.path.read_text() == content
    directory.path.write_text('{"users": []}')
    assert directory.list_users() == []


def test_writes_are_atomic(directory: UserDirectory, monkeypatch: pytest.MonkeyPatch) -> None:
    directory.add("ana", Role.VIEWER, PASSWORD)
    before = directory.path.read_bytes()
    inode = directory.path.stat().st_ino
    directory.add("bob", Role.VIEWER, PASSWORD)
    assert directory.path.stat().st_ino != inode  # replaced by a rename, never rewritten in place
    before = directory.path.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        directory.add("carol", Role.VIEWER, PASSWORD)
    monkeypatch.undo()
    assert directory.path.read_bytes() == before
    assert [p.name for p in directory.path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert [u.name for u in directory.list_users()] == ["ana", "bob"]


def test_api_tokens(directory: UserDirectory) -> None:
    directory.add("ana", Role.RESPONDER, PASSWORD)
    directory.add("bob", Role.VIEWER, None)
    assert not directory.has_api_tokens()
    record, token = directory.issue_token("ana", "ci")
    _, bobs = directory.issue_token("bob")
    assert directory.has_api_tokens()
    assert token.startswith(f"vgl_{record.id}_")
    assert token not in directory.path.read_text()  # only its hash is kept
    assert [(t.id, t.label) for t in directory.list_users()[0].tokens] == [(record.id, "ci")]

    found = directory.user_for_token(token)
    assert found is not None
    assert found.name == "ana"
    assert found.role is Role.RESPONDER
    bob = directory.user_for_token(bobs)
    assert bob is not None
    assert bob.name == "bob"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")  # right id, wrong secret
    for wrong in (forged, "vgl_", "vgl_zz_zz", token + "x", "Bearer " + token, ""):
        assert directory.user_for_token(wrong) is None

    directory.revoke_token("ana", record.id)
    assert directory.user_for_token(token) is None
    assert directory.user_for_token(bobs) is not None  # revoking one token leaves the others
    directory.set_disabled("bob", True)
    assert directory.user_for_token(bobs) is None


def test_changes_by_another_process_apply_without_a_restart(directory: UserDirectory) -> None:
    """The API keeps one directory for its lifetime; `vigil user ...` writes through another."""
    cli_side = UserDirectory(directory.path)
    assert directory.get("ana") is None
    cli_side.add("ana", Role.VIEWER, PASSWORD)
    assert directory.get("ana") is not None
    _, token = cli_side.issue_token("ana")
    assert directory.user_for_token(token) is not None
    cli_side.set_role("ana", Role.RESPONDER)
    assert directory.user_for_token(token).role is Role.RESPONDER  # type: ignore[union-attr]
    cli_side.remove("ana")
    assert directory.user_for_token(token) is None
    assert not directory.has_users()


def settings_in(state_dir: Path, **overrides: object) -> Settings:
    return Settings.model_validate({"state_dir": state_dir, **overrides})


def test_the_first_admin_is_created_once(tmp_path: Path, open_umask: None) -> None:
    settings = settings_in(tmp_path / "state")
    path = ensure_admin(settings)
    assert path == admin_password_path(settings)
    assert mode(path) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 20
    directory = UserDirectory.of(settings)
    admin = directory.authenticate(ADMIN_NAME, password)
    assert admin is not None
    assert admin.role is Role.ADMIN
    assert password not in settings.users_path.read_text()

    assert ensure_admin(settings) == path  # again: nothing new, and it still says where the password is
    assert path.read_text().strip() == password
    assert [u.name for u in directory.list_users()] == [ADMIN_NAME]

    directory.set_password(ADMIN_NAME, "changed by the admin")
    assert ensure_admin(settings) is None  # the file no longer holds the password: not pointed at
    assert [u.name for u in directory.list_users()] == [ADMIN_NAME]


def test_no_first_admin_with_users_or_oidc(tmp_path: Path) -> None:
    with_users = settings_in(tmp_path / "a")
    UserDirectory.of(with_users).add("ana", Role.ADMIN, PASSWORD)
    assert ensure_admin(with_users) is None
    assert not admin_password_path(with_users).exists()

    oidc = settings_in(tmp_path / "b", oidc_issuer="https://id.example.com", oidc_client_id="vigil")
    assert ensure_admin(oidc) is None
    assert not UserDirectory.of(oidc).has_users()


def test_console_session_helpers(tmp_path: Path, directory: UserDirectory, open_umask: None) -> None:
    settings = settings_in(tmp_path / "state")
    secret = storage_secret(settings)
    assert len(secret) >= 40
    assert mode(tmp_path / "state" / "console-secret") == 0o600
    assert storage_secret(settings) == secret  # stable: sessions survive a restart
    (tmp_path / "state" / "console-secret").chmod(0o644)
    assert storage_secret(settings) == secret
    assert mode(tmp_path / "state" / "console-secret") == 0o600
    assert storage_secret(settings_in(tmp_path / "state", console_secret=SecretStr("from-env"))) == "from-env"
    assert session_cookie_options(settings)["https_only"] is False
    assert session_cookie_options(settings_in(tmp_path, console_secure_cookies=True))["https_only"] is True

    directory.add("ana", Role.RESPONDER, PASSWORD)
    directory.add("root", Role.ADMIN, PASSWORD)
    storage = session_values("ana", Role.RESPONDER)
    assert storage == {"user": "ana", "role": "responder", "source": "local"}
    now = signed_in(storage, directory)
    assert now is not None
    assert (now.name, now.role) == ("ana", Role.RESPONDER)
    directory.set_role("ana", Role.VIEWER)
    assert signed_in(storage, directory).role is Role.VIEWER  # type: ignore[union-attr]
    directory.set_disabled("ana", True)
    assert signed_in(storage, directory) is None
    directory.set_disabled("ana", False)
    directory.remove("ana")
    assert signed_in(storage, directory) is None
    assert signed_in({}, directory) is None
    assert signed_in({"user": "root", "role": "superuser"}, directory) is None
    oidc = signed_in(session_values("oidc:ana@example.com", Role.RESPONDER, "oidc"), directory)
    assert oidc is not None
    assert (oidc.name, oidc.role, oidc.source) == ("oidc:ana@example.com", Role.RESPONDER, "oidc")


def test_user_cli(cli_state: Path) -> None:
    runner = CliRunner()

    def vigil(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(app, ["user", *args], input=stdin)
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = vigil("add", "ana", "--role", "responder", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0
    assert "added ana (responder)" in out
    code, _, _ = vigil("add", "root", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n")  # prompt, twice
    assert code == 0
    code, _, err = vigil("add", "eve", "--role", "viewer", stdin=f"{PASSWORD}\nsomething else\n" * 3)
    assert code != 0
    assert UserDirectory(cli_state / "users.json").get("eve") is None
    code, _, err = vigil("add", "bob", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert code == 1
    assert "too short" in err
    code, _, err = vigil("add", "Bad", "--role", "viewer", "--no-password")
    assert code == 1
    assert "invalid user name" in err
    code, _, err = vigil("add", "ana", "--role", "viewer", "--no-password")
    assert code == 1
    assert "already exists" in err
    code, _, err = vigil("add", "carol", "--role", "owner", "--no-password")
    assert code == 2
    assert "owner" in err

    code, out, err = vigil("token", "ana", "--label", "ci")
    assert code == 0
    assert "shown once" in err
    assert "VIGIL_API_TOKEN" in err
    token = out.strip()
    directory = UserDirectory(cli_state / "users.json")
    assert directory.user_for_token(token) is not None
    token_id = token.split("_")[1]

    code, out, _ = vigil("list")
    assert code == 0
    assert "ana" in out
    assert "responder" in out
    assert f"{token_id} ci" in out
    assert "root" in out
    assert "argon2" not in out
    assert token not in out

    code, out, _ = vigil("passwd", "ana", "--password-stdin", stdin="a new password\n")
    assert code == 0
    assert directory.authenticate("ana", "a new password") is not None
    code, _, _ = vigil("role", "ana", "viewer")
    assert code == 0
    demoted = directory.get("ana")
    assert demoted is not None
    assert demoted.role is Role.VIEWER
    code, _, err = vigil("role", "root", "viewer")
    assert code == 1
    assert "last admin" in err
    code, _, _ = vigil("token", "ana", "--revoke", token_id)
    assert code == 0
    assert directory.user_for_token(token) is None
    code, _, err = vigil("token", "ana", "--revoke", token_id)
    assert code == 1
    assert "no API token" in err
    code, _, _ = vigil("remove", "ana")
    assert code == 0
    assert directory.get("ana") is None
    code, _, err = vigil("remove", "ana")
    assert code == 1
    assert "no user 'ana'" in err

    (cli_state / "users.json").write_text("{broken")
    code, _, err = vigil("list")
    assert code == 1
    assert "is corrupt" in err


def test_vigil_up_says_where_the_admin_password_is_never_what(tmp_path: Path) -> None:
    from rich.console import Console

    from vigil.stack.up import _Stack

    output = io.StringIO()
    stack = _Stack(settings_in(tmp_path / "state"), Console(file=output, width=300))
    stack._ensure_admin()
    stack.print_summary()
    path = admin_password_path(stack.settings)
    password = path.read_text().strip()
    printed = output.getvalue()
    assert f"console user 'admin', password in {path}" in printed
    assert f"user admin, password in {path}" in printed
    assert password not in printed

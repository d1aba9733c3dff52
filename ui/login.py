"""Sign-in for the console: the `/login` page (users file, argon2), OIDC when configured, sign-out, the guard every
other page passes, a failed-attempt throttle and the sign-in counter.

The session lives in NiceGUI's `app.storage.user` (server-side, keyed by a signed cookie; see
vigil.auth.console_session). It holds the user's name, role and how they signed in; never a password, hash or
token. Every page looks the user up again (`current_user`), so a removed or disabled user is out at the next page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from prometheus_client import Counter

from ui.session import SignedInUser
from vigil.auth.console_session import session_values, signed_in
from vigil.auth.directory import UserDirectory
from vigil.auth.models import UsersFileError
from vigil.settings import Settings

if TYPE_CHECKING:
    from vigil.auth.oidc import OidcProvider

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
OIDC_PATH = "/login/oidc"
OIDC_CALLBACK_PATH = "/login/oidc/callback"
WRONG_CREDENTIALS = "wrong name or password"
OIDC_FAILED = "Single sign-on did not complete. Try again, or sign in with a name and password."
OIDC_PENDING_KEY = "oidc_pending"
OIDC_NEXT_KEY = "oidc_next"
NO_USERS = "No users yet: an admin adds one with `vigil user add NAME --role admin` (`vigil up` makes `admin`)."
USERS_FILE_UNREADABLE = "Sign-in is unavailable: the users file cannot be read. An admin can check `vigil user list`."

SIGNINS = Counter(
    "vigil_console_signins_total",
    "Console sign-in attempts by outcome: success, refused (wrong name or password), throttled (too many failures), "
    "error (users file unreadable), oidc_success, oidc_refused.",
    ["outcome"],
)

MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 300.0


# --- pure functions ----------------------------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this console only. Anything else (another host, a scheme, `//host`,
    backslashes a browser reads as slashes, control characters, the sign-in page itself) goes to the list."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith(LOGIN_PATH):
        return "/"
    return target


def login_url(target: str) -> str:
    """The sign-in page that returns to `target` (a path with its query) afterwards."""
    return f"{LOGIN_PATH}?next={quote(safe_next(target), safe='')}"


def session_user(storage: Mapping[str, Any], directory: UserDirectory) -> SignedInUser | None:
    """The signed-in user of a session, as the users file (or the OIDC sign-in) says now; None: sign in."""
    who = signed_in(storage, directory)
    return None if who is None else SignedInUser(name=who.name, role=who.role)


class SignInThrottle:
    """Refuses sign-in for a name, or from an address, after MAX_FAILURES failures within FAILURE_WINDOW_SECONDS.

    In memory, per console process: it slows a guesser down without a store, and forgets on restart."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window_seconds: float = FAILURE_WINDOW_SECONDS) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._failures: dict[str, deque[float]] = {}

    @staticmethod
    def _keys(name: str, address: str) -> tuple[str, str]:
        return f"user:{name.strip().lower()}", f"addr:{address}"

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, name: str, address: str, now: float | None = None) -> float:
        """Seconds until a refused name/address may try again; 0: it may try now."""
        now = time.monotonic() if now is None else now
        waits = [
            times[0] + self.window_seconds - now
            for times in (self._recent(key, now) for key in self._keys(name, address))
            if len(times) >= self.max_failures
        ]
        return max(waits, default=0.0)

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in self._keys(name, address):
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, name: str) -> None:
        self._failures.pop(self._keys(name, "")[0], None)


def throttled_message(seconds: float) -> str:
    return f"Too many failed sign-ins. Try again in {max(1, round(seconds))} s."


# --- pages and routes --------------------------------------------------------------------------------------


def client_address() -> str:
    from nicegui import ui

    request = ui.context.client.request
    return request.client.host if request.client is not None else "unknown"


def login_page(
    settings: Settings, directory: UserDirectory, throttle: SignInThrottle, target: str, *, oidc_failed: bool = False
) -> None:
    """Build `/login`: name and password; the OIDC button when configured."""
    from nicegui import app, ui

    next_path = safe_next(target)
    ui.page_title("Vigil — sign in")
    with ui.card().classes("absolute-center w-80").props("data-testid=login-card"):
        ui.label("Vigil — sign in").classes("text-h6")
        name = (
            ui.input("Name").props("autocomplete=username data-testid=login-name").mark("login-name").classes("w-full")
        )
        password = (
            ui.input("Password", password=True, password_toggle_button=True)
            .props("autocomplete=current-password data-testid=login-password")
            .mark("login-password")
            .classes("w-full")
        )
        message = ui.label("").classes("text-negative").props("data-testid=login-message").mark("login-message")
        message.set_visibility(False)
        if oidc_failed:
            message.set_text(OIDC_FAILED)
            message.set_visibility(True)

        def refuse(text: str) -> None:
            message.set_text(text)
            message.set_visibility(True)

        async def sign_in() -> None:
            user_name, secret = (name.value or "").strip(), password.value or ""
            address = client_address()
            wait = throttle.retry_after(user_name, address)
            if wait > 0:
                SIGNINS.labels(outcome="throttled").inc()
                refuse(throttled_message(wait))
                return
            try:
                user = await asyncio.to_thread(directory.authenticate, user_name, secret)
            except UsersFileError as error:
                log.error("console sign-in: %s", error)
                SIGNINS.labels(outcome="error").inc()
                refuse(USERS_FILE_UNREADABLE)
                return
            password.value = ""
            if user is None:
                throttle.failed(user_name, address)
                SIGNINS.labels(outcome="refused").inc()
                refuse(WRONG_CREDENTIALS)
                return
            throttle.succeeded(user_name)
            SIGNINS.labels(outcome="success").inc()
            app.storage.user.clear()
            app.storage.user.update(session_values(user.name, user.role))
            ui.navigate.to(next_path)

        try:
            empty = not directory.has_users()
        except UsersFileError:
            empty = False  # said at the first attempt, without details on the page
        if empty:
            ui.label(NO_USERS).classes("text-caption text-grey-8").mark("login-no-users")
        password.on("keydown.enter", sign_in)
        ui.button("Sign in", on_click=sign_in).props("data-testid=login-submit").mark("login-submit").classes("w-full")
        if settings.oidc_enabled:
            ui.separator()
            ui.button(
                "Sign in with single sign-on",
                on_click=lambda: ui.navigate.to(f"{OIDC_PATH}?next={quote(next_path, safe='')}"),
            ).props("outline data-testid=login-oidc").classes("w-full")


def sign_out() -> None:
    from nicegui import app, ui

    app.storage.user.clear()
    ui.navigate.to(LOGIN_PATH)


def oidc_redirect_uri(settings: Settings) -> str:
    """Where the provider sends the browser back: the console's public URL (VIGIL_CONSOLE_URL behind a proxy)."""
    return f"{settings.console_base_url}{OIDC_CALLBACK_PATH}"


def install_oidc_routes(settings: Settings, provider: OidcProvider | None = None) -> None:
    """`/login/oidc` (to the provider) and `/login/oidc/callback` (back, signed in), when OIDC is configured. What
    the callback needs (state, nonce, PKCE verifier, where to go next) waits in the session, used once."""
    if not settings.oidc_enabled:
        return
    from nicegui import app
    from pydantic import ValidationError
    from starlette.responses import RedirectResponse

    from vigil.auth.oidc import OidcError, OidcProvider, PendingSignIn

    oidc = provider or OidcProvider(settings)
    failed = RedirectResponse(f"{LOGIN_PATH}?oidc=failed", status_code=303)

    @app.get(OIDC_PATH, include_in_schema=False)
    async def oidc_start(next: str = "/") -> RedirectResponse:
        try:
            url, pending = await oidc.start_sign_in(oidc_redirect_uri(settings))
        except OidcError as error:
            log.warning("console OIDC sign-in not started: %s", error)
            SIGNINS.labels(outcome="oidc_refused").inc()
            return failed
        app.storage.user[OIDC_PENDING_KEY] = pending.model_dump(mode="json")
        app.storage.user[OIDC_NEXT_KEY] = safe_next(next)
        return RedirectResponse(url, status_code=303)

    @app.get(OIDC_CALLBACK_PATH, include_in_schema=False)
    async def oidc_callback(
        state: str | None = None, code: str | None = None, error: str | None = None
    ) -> RedirectResponse:
        saved = app.storage.user.pop(OIDC_PENDING_KEY, None)
        next_path = safe_next(app.storage.user.pop(OIDC_NEXT_KEY, None))
        try:
            if saved is None:
                raise OidcError("no sign-in was started in this browser session")
            pending = PendingSignIn.model_validate(saved)
            identity = await oidc.finish_sign_in(pending, state=state, code=code, error=error)
        except (OidcError, ValidationError) as refusal:
            log.warning("console OIDC sign-in refused: %s", refusal)
            SIGNINS.labels(outcome="oidc_refused").inc()
            return failed
        SIGNINS.labels(outcome="oidc_success").inc()
        app.storage.user.clear()
        app.storage.user.update(session_values(identity.name, identity.role, "oidc"))
        return RedirectResponse(next_path, status_code=303)

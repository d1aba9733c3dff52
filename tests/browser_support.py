"""Real-browser support for the console's browser tests and its first-paint benchmark: headless Debian chromium
driven by selenium through Debian's chromedriver, the console as a real `python -m vigil console` process, users
made with the auth module's own API, and page snapshots (a screenshot per page, and no JavaScript errors).

Every wait is a condition with a timeout (WebDriverWait, or a poll of the console's `/login`), never a fixed
sleep. The driver is blocking: async tests call it through `asyncio.to_thread`, so the in-process workers keep
running while a test waits for the page.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import httpx
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import free_port
from vigil.auth.directory import UserDirectory
from vigil.auth.roles import Role

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW_SIZE = (1400, 1000)
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
MAX_SHOT_HEIGHT = 6000
WAIT_SECONDS = 30.0
CONSOLE_START_SECONDS = 60.0

INHERITED_CONFIG = re.compile(r"^(VIGIL_|NICEGUI_)|^(TEMPORAL_ADDRESS|DATABASE_URL|QDRANT_URL|QDRANT_API_KEY)$")
"""Configuration of the shell running the tests that must not reach the console under test: it gets only what
the test gives it."""


# --- chromium --------------------------------------------------------------------------------------------------


def start_chromium() -> WebDriver:
    """Headless chromium (the new headless mode) at a fixed window size, keeping every browser console message so
    that a page's JavaScript errors can fail the test that opened it."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        assert binary.exists(), f"{binary} is missing: install the Debian package {package} (scripts/setup.sh)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
        "--no-sandbox",  # the sandbox needs user namespaces, which containers and root sessions often lack
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


# --- users -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: Role
    password: str = field(repr=False)

    @property
    def label(self) -> str:
        """How the header names the signed-in user."""
        return f"{self.name} ({self.role.value})"


def make_users(users_file: Path, roles: dict[str, Role]) -> dict[str, ConsoleUser]:
    """Users with random passwords in a users file of their own, written by the auth module (argon2 hashes)."""
    directory = UserDirectory(users_file)
    made: dict[str, ConsoleUser] = {}
    for name, role in roles.items():
        password = secrets.token_urlsafe(12)
        directory.add(name, role, password)
        made[name] = ConsoleUser(name, role, password)
    return made


def poll_until(ready: Callable[[], bool], what: str, timeout: float, details: Callable[[], str] = lambda: "") -> None:
    """Wait for a condition outside the browser (a process serving, a server with data), checked every 0.1 s; fail
    naming `what` (and `details()`) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s\n{details()}".rstrip())
        time.sleep(0.1)


# --- the console process ---------------------------------------------------------------------------------------


@dataclass
class ConsoleProcess:
    """`python -m vigil console` as an operator runs it, in an empty working directory (no `.env` is read), with
    its own state dir and port, and only the configuration given here."""

    folder: Path
    temporal_address: str
    database_url: str
    users_file: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    """The name the browser uses for it (it listens on 127.0.0.1): cookies are per host name, not per port, so two
    consoles a browser signs in to at once need two names, e.g. 127.0.0.1 and localhost."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "console.log"

    def environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not INHERITED_CONFIG.search(name)}
        # NiceGUI takes this variable to mean "inside pytest" and then serves on NICEGUI_SCREEN_TEST_PORT instead.
        env.pop("PYTEST_CURRENT_TEST", None)
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                "VIGIL_CONSOLE_PORT": str(self.port),
                "VIGIL_STATE_DIR": str(self.folder / "state"),
                "VIGIL_USERS_FILE": str(self.users_file),
                "VIGIL_MONITORING": "false",
                "VIGIL_TOYPROD_PORT": str(free_port()),  # the Simulate page asks toyprod: never a real one
                "TEMPORAL_ADDRESS": self.temporal_address,
                "DATABASE_URL": self.database_url,
                **self.extra_env,
            }
        )
        return env

    def start(self, timeout: float = CONSOLE_START_SECONDS) -> None:
        """Start it and wait until it serves the sign-in page; fail with its log if it exits or never does."""
        workdir = self.folder / "cwd"
        workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "vigil", "console"],
                cwd=workdir,
                env=self.environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process = process

        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=2.0) as http:

            def serves_login() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"the console exited with {process.returncode}:\n{self.log_tail()}")
                try:
                    return http.get("/login").status_code == 200
                except httpx.TransportError:
                    return False  # not listening yet

            poll_until(serves_login, f"the console serving /login at {self.base_url}", timeout, self.log_tail)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no console log)"

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL to its process group if it does not within 20 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def running_console(console: ConsoleProcess) -> Iterator[ConsoleProcess]:
    try:
        console.start()
        yield console
    finally:
        console.stop()


# --- the browser -----------------------------------------------------------------------------------------------


def marked(name: str) -> str:
    """CSS selector of the element the console marks `data-testid=name`."""
    return f'[data-testid="{name}"]'


def screenshot_name(test: str, page: str) -> str:
    """`<test>-<page>.png`, with parametrisation brackets and other odd characters made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{test}-{page}").strip("_") + ".png"


class JavaScriptErrors(AssertionError):
    """A page logged errors to the browser console (uncaught exceptions, failed requests, console.error)."""


class Browser:
    """One headless chromium on one console. All methods block: async tests run them with `asyncio.to_thread`."""

    def __init__(self, driver: WebDriver, base_url: str, screenshots: Path = SCREENSHOTS) -> None:
        self.driver = driver
        self.base_url = base_url
        self.screenshots = screenshots
        self.signed_in: ConsoleUser | None = None

    def close(self) -> None:
        self.driver.quit()

    # --- waiting and finding ---------------------------------------------------------------------------

    def wait(
        self, condition: Callable[[WebDriver], T | Literal[False] | None], message: str, timeout: float = WAIT_SECONDS
    ) -> T:
        """Poll `condition` until it returns something truthy, and return that; a stale or missing element means
        "not yet"."""
        waiter: WebDriverWait[WebDriver] = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.1,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        )
        # `until` returns only a truthy result of `condition`, or raises TimeoutException.
        return cast(T, waiter.until(condition, f"{message} (within {timeout:g} s, at {self.driver.current_url})"))

    def element(self, name: str, timeout: float = WAIT_SECONDS) -> WebElement:
        """The visible element marked `data-testid=name`."""

        def shown(driver: WebDriver) -> WebElement | None:
            return next((e for e in driver.find_elements(By.CSS_SELECTOR, marked(name)) if e.is_displayed()), None)

        return self.wait(shown, f"no visible element {marked(name)}", timeout)

    def present(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, name: str) -> bool:
        return any(element.is_displayed() for element in self.present(marked(name)))

    def wait_text(self, name: str, text: str, timeout: float = WAIT_SECONDS) -> str:
        """Wait until the element marked `name` shows `text`; returns its whole text."""

        def shows(driver: WebDriver) -> str | None:
            for element in driver.find_elements(By.CSS_SELECTOR, marked(name)):
                if text in element.text:
                    return str(element.text)
            return None

        return self.wait(shows, f"{marked(name)} does not show {text!r}", timeout)

    def click(self, name: str, timeout: float = WAIT_SECONDS) -> None:
        """Click the element marked `name` once it is clickable (an overlay fading out is waited for)."""

        def clicked(driver: WebDriver) -> bool:
            element = driver.find_element(By.CSS_SELECTOR, marked(name))
            if not (element.is_displayed() and element.is_enabled()):
                return False
            try:
                element.click()
            except ElementClickInterceptedException:
                return False
            return True

        self.wait(clicked, f"{marked(name)} is not clickable", timeout)

    def type_into(self, name: str, text: str) -> None:
        """Type into the input of the field marked `name` (Quasar puts the mark on the field, around its input)."""
        field_element = self.element(name)
        target = (
            field_element
            if field_element.tag_name in ("input", "textarea")
            else field_element.find_element(By.CSS_SELECTOR, "input, textarea")
        )
        # Select and delete what is there with keys: `clear()` changes the DOM without the input events Vue's model
        # listens to, so the old value would come back.
        target.send_keys(Keys.CONTROL, "a")
        target.send_keys(Keys.DELETE)
        target.send_keys(text)
        self.wait(lambda _: target.get_attribute("value") == text, f"{marked(name)} does not hold what was typed")

    # --- pages -----------------------------------------------------------------------------------------

    def open(self, path: str) -> None:
        """Load `path` and wait for the page's websocket handshake: NiceGUI drops the events (a click, a typed
        value) of a page that has not shaken hands yet."""
        self.driver.get(self.base_url + path)
        self.wait(
            lambda driver: driver.execute_script("return window.did_handshake === true;") is True,
            "the page's websocket did not connect",
        )

    def path(self) -> str:
        url = str(self.driver.current_url)
        return url.removeprefix(self.base_url) or "/"

    def submit_sign_in(self, name: str, password: str) -> None:
        """Fill in and send the sign-in form of the page shown (the browser must be on `/login`)."""
        self.element("login-card")
        self.type_into("login-name", name)
        self.type_into("login-password", password)
        self.click("login-submit")

    def forget_session(self) -> None:
        """Drop this console's session cookie: the next page is a new browser session, signed out."""
        self.open("/login")  # on this console's host: a browser deletes the cookies of the page it shows
        self.driver.delete_all_cookies()
        self.signed_in = None

    def sign_in(self, user: ConsoleUser) -> None:
        """Sign in as `user` in a fresh browser session (a new session cookie), and wait for the header to name
        them. A no-op when `user` is already the one signed in."""
        if self.signed_in == user and self.present(marked("signed-in-user")):
            return
        self.forget_session()
        self.open("/login")
        self.submit_sign_in(user.name, user.password)

        def outcome(driver: WebDriver) -> str | None:
            for element in driver.find_elements(By.CSS_SELECTOR, marked("signed-in-user")):
                if element.text == user.label:
                    return "signed in"
            refusals = [e.text for e in driver.find_elements(By.CSS_SELECTOR, marked("login-message")) if e.text]
            return f"refused: {refusals[0]}" if refusals and refusals[0] else None

        result = self.wait(outcome, f"signing in as {user.name} had no outcome")
        assert result == "signed in", f"signing in as {user.name}: {result}"
        self.signed_in = user

    def js_errors(self) -> list[str]:
        """The browser console's errors since the last call (the driver hands each log entry out once)."""
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry["message"]) for entry in entries if entry["level"] == "SEVERE"]

    def screenshot(self, test: str, page: str) -> Path:
        """Save a screenshot of the whole page shown (not only the window; up to MAX_SHOT_HEIGHT pixels down) as
        `<test>-<page>.png`."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        target = self.screenshots / screenshot_name(test, page)
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], MAX_SHOT_HEIGHT), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        target.write_bytes(base64.b64decode(shot["data"]))
        return target

    def snapshot(self, test: str, page: str) -> Path:
        """Save a screenshot of the page shown as `<test>-<page>.png`, then fail if the page logged any JavaScript
        error since the previous snapshot (the screenshot is kept either way, to see what went wrong)."""
        target = self.screenshot(test, page)
        errors = self.js_errors()
        if errors:
            raise JavaScriptErrors(f"JavaScript errors on {page} ({self.driver.current_url}): {errors}")
        return target


@contextmanager
def chromium_on(base_url: str) -> Iterator[Browser]:
    """A headless chromium for `base_url`, quit afterwards whatever happened."""
    browser = Browser(start_chromium(), base_url)
    try:
        yield browser
    finally:
        browser.close()

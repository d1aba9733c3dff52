"""Console sign-in (ui.login, ui.console routing) in NiceGUI's user simulation, against a real users file with
argon2 hashes: every page but `/login` needs a signed-in user, refusals say one generic thing and are counted,
roles decide what the header offers, sign-out ends the session, `next` never leaves the console."""

from __future__ import annotations

from pathlib import Path

import pytest
from nicegui import ui
from nicegui.storage import Storage
from prometheus_client import REGISTRY

from tests.console_support import add_user, console_settings, services_for, sign_in, simulated_console
from ui.layout import nav_links
from ui.login import (
    NO_USERS,
    WRONG_CREDENTIALS,
    SignInThrottle,
    login_url,
    safe_next,
    throttled_message,
)
from ui.session import SignedInUser
from vigil.auth.directory import UserDirectory
from vigil.auth.roles import Role


@pytest.fixture(autouse=True)
def nicegui_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep NiceGUI's storage out of the working directory (the repo) during in-process simulations."""
    monkeypatch.setattr(Storage, "path", tmp_path / "nicegui")


def signins(outcome: str) -> float:
    return REGISTRY.get_sample_value("vigil_console_signins_total", {"outcome": outcome}) or 0.0


# --- pure functions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/incidents/incident-a?tab=1", "/incidents/incident-a?tab=1"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/path", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("/login?next=/", "/"),
        ("incidents", "/"),
    ],
)
def test_next_never_leaves_the_console(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_login_url_keeps_the_path_and_query_encoded() -> None:
    assert login_url("/incidents/incident-a?x=1&y=2") == "/login?next=%2Fincidents%2Fincident-a%3Fx%3D1%26y%3D2"
    assert login_url("https://evil.example") == "/login?next=%2F"


def test_throttle_refuses_after_repeated_failures_and_forgets_after_the_window() -> None:
    throttle = SignInThrottle(max_failures=3, window_seconds=60)
    for second in range(3):
        assert throttle.retry_after("alice", "10.0.0.1", now=100.0 + second) == 0
        throttle.failed("alice", "10.0.0.1", now=100.0 + second)

    assert throttle.retry_after("alice", "10.0.0.1", now=103.0) == pytest.approx(57.0)
    assert throttle.retry_after("ALICE ", "10.0.0.9", now=103.0) > 0  # the name, from anywhere
    assert throttle.retry_after("bob", "10.0.0.1", now=103.0) > 0  # the address, for any name
    assert throttle.retry_after("bob", "10.0.0.2", now=103.0) == 0
    assert throttle.retry_after("alice", "10.0.0.1", now=161.0) == 0  # the window has passed
    assert throttled_message(56.4) == "Too many failed sign-ins. Try again in 56 s."


def test_nav_offers_simulate_to_responders_only(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    viewer = [text for text, _, _ in nav_links(settings, SignedInUser("v", Role.VIEWER))]
    responder = [text for text, _, _ in nav_links(settings, SignedInUser("r", Role.RESPONDER))]

    assert viewer == ["Incidents", "Insights", "Knowledge", "Temporal Web UI", "API docs"]
    assert responder == ["Incidents", "Insights", "Knowledge", "Simulate", "Temporal Web UI", "API docs"]
    external = console_settings(tmp_path, TEMPORAL_ADDRESS="temporal.example:7233")
    assert "Temporal Web UI" not in [text for text, _, _ in nav_links(external, SignedInUser("v", Role.VIEWER))]


# --- in the user simulation --------------------------------------------------------------------------------


async def test_every_page_but_login_redirects_there_with_next(tmp_path: Path) -> None:
    services = services_for(console_settings(tmp_path), None)

    async with simulated_console(services) as user:
        for path in ("/", "/incidents/incident-a", "/insights", "/simulate?x=1"):
            response = await user.http_client.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"] == login_url(path)
        await user.open("/incidents/incident-a")
        await user.should_see("Vigil — sign in")
        await user.should_not_see("Incidents")


async def test_wrong_password_and_unknown_user_get_one_generic_refusal(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    password = add_user(settings, "alice", Role.RESPONDER)
    services = services_for(settings, None)
    refused = signins("refused")

    async with simulated_console(services) as user:
        await sign_in(user, "alice", password + "x")
        await user.should_see(WRONG_CREDENTIALS, retries=50)
        await sign_in(user, "mallory", password)
        await user.should_see(WRONG_CREDENTIALS, retries=50)
        await user.should_not_see("alice (responder)")
        response = await user.http_client.get("/", follow_redirects=False)
        assert response.status_code == 303  # still signed out

    assert signins("refused") == refused + 2


async def test_right_password_lands_on_the_page_asked_for_with_the_name_shown(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    password = add_user(settings, "alice", Role.RESPONDER)
    services = services_for(settings, None)
    succeeded = signins("success")

    async with simulated_console(services) as user:
        await sign_in(user, "alice", password, path="/?from=test")
        await user.should_see("alice (responder)", retries=50)
        assert user.back_history[-1] == "/?from=test"
        links = {link.text: link.props["href"] for link in user.find(ui.link).elements}
        assert {"Incidents", "Insights", "Knowledge", "Simulate", "API docs"} <= set(links)
        assert links["API docs"] == "http://127.0.0.1:8000/docs"

        # Nothing secret in the page: neither the password, nor its hash, nor the cookie's signing key.
        page = (await user.http_client.get("/")).text
        stored_hash = UserDirectory.of(settings).get("alice")
        assert stored_hash is not None
        assert stored_hash.password_hash is not None
        for secret in (password, stored_hash.password_hash, "simulated secret"):
            assert secret not in page

    assert signins("success") == succeeded + 1


async def test_a_viewer_gets_no_simulate(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    password = add_user(settings, "victor", Role.VIEWER)
    services = services_for(settings, None)

    async with simulated_console(services) as user:
        await sign_in(user, "victor", password)
        await user.should_see("victor (viewer)", retries=50)
        assert "Simulate" not in [link.text for link in user.find(ui.link).elements]
        await user.open("/simulate")
        await user.should_see("Simulations are for responders and admins.")


async def test_sign_out_ends_the_session(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    password = add_user(settings, "alice", Role.ADMIN)
    services = services_for(settings, None)

    async with simulated_console(services) as user:
        await sign_in(user, "alice", password)
        await user.should_see("alice (admin)", retries=50)
        user.find(marker="sign-out").click()
        await user.should_see("Vigil — sign in", retries=50)
        response = await user.http_client.get("/", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2F"


async def test_a_disabled_user_is_signed_out_at_the_next_page(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    password = add_user(settings, "alice", Role.RESPONDER)
    add_user(settings, "root", Role.ADMIN)
    services = services_for(settings, None)

    async with simulated_console(services) as user:
        await sign_in(user, "alice", password)
        await user.should_see("alice (responder)", retries=50)
        UserDirectory.of(settings).set_disabled("alice", True)
        response = await user.http_client.get("/", follow_redirects=False)
        assert response.status_code == 303


async def test_repeated_failures_are_throttled_even_with_the_right_password(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    password = add_user(settings, "alice", Role.RESPONDER)
    services = services_for(settings, None)
    services.throttle.max_failures = 2
    throttled = signins("throttled")

    async with simulated_console(services) as user:
        for _ in range(2):
            await sign_in(user, "alice", "not-the-password")
            await user.should_see(WRONG_CREDENTIALS, retries=50)
        await sign_in(user, "alice", password)
        await user.should_see("Too many failed sign-ins", retries=50)
        await user.should_not_see("alice (responder)")

    assert signins("throttled") == throttled + 1


async def test_metrics_are_served_without_sign_in(tmp_path: Path) -> None:
    services = services_for(console_settings(tmp_path), None)

    async with simulated_console(services) as user:
        response = await user.http_client.get("/metrics", follow_redirects=False)
        assert response.status_code == 200
        assert "vigil_console_signins_total" in response.text


async def test_without_users_the_sign_in_page_says_how_to_add_one(tmp_path: Path) -> None:
    services = services_for(console_settings(tmp_path), None)

    async with simulated_console(services) as user:
        await user.open("/")
        await user.should_see(NO_USERS)
        add_user(services.context.settings, "alice", Role.ADMIN)
        await user.open("/login")
        await user.should_not_see(NO_USERS)

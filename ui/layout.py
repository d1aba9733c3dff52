"""The header every signed-in console page shares: where you are, who you are, and the way out."""

from __future__ import annotations

from ui.session import SignedInUser
from vigil.auth.roles import Role
from vigil.settings import Settings

NAV_PAGES: list[tuple[str, str, Role]] = [
    ("Incidents", "/", Role.VIEWER),
    ("Insights", "/insights", Role.VIEWER),
    ("Knowledge", "/knowledge", Role.VIEWER),
    ("Simulate", "/simulate", Role.RESPONDER),
]
"""(text, path, least role that sees it) of the console's own pages."""


def nav_links(settings: Settings, user: SignedInUser) -> list[tuple[str, str, bool]]:
    """(text, link, opens in a new tab) of the header's links for this user: the pages their role may see, then
    the Temporal Web UI (when there is one we know of) and the API docs."""
    from ui.console import api_docs_url, temporal_ui_url

    links = [(text, path, False) for text, path, role in NAV_PAGES if user.may(role)]
    web_ui = temporal_ui_url(settings)
    if web_ui is not None:
        links.append(("Temporal Web UI", web_ui, True))
    links.append(("API docs", api_docs_url(settings), True))
    return links


def header(settings: Settings, user: SignedInUser) -> None:
    from nicegui import ui

    from ui.login import sign_out

    with ui.header().classes("items-center bg-white text-black q-px-md q-py-xs").props("bordered"):
        ui.link("Vigil", "/").classes("text-h6 text-black no-underline q-mr-md")
        for text, link, new_tab in nav_links(settings, user):
            ui.link(text, link, new_tab=new_tab).classes("q-mr-sm").props(
                f"data-testid=nav-{text.lower().replace(' ', '-')}"
            )
        ui.space()
        ui.label(f"{user.name} ({user.role.value})").classes("text-grey-8 q-mr-sm").props("data-testid=signed-in-user")
        ui.button("Sign out", on_click=sign_out).props("flat dense no-caps data-testid=sign-out").mark("sign-out")

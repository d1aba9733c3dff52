"""The Slack app manifest for Vigil (`vigil slack manifest`): paste it at https://api.slack.com/apps → Create New
App → From a manifest, then install the app and set VIGIL_SLACK_BOT_TOKEN and VIGIL_SLACK_SIGNING_SECRET.

One request URL, `<base>/slack/events`, takes events, interactivity and the `/vigil` command. Slack only calls
public HTTPS URLs; an API that Slack cannot reach uses Socket Mode instead (an app-level token with
`connections:write` as VIGIL_SLACK_APP_TOKEN), and its manifest has no request URLs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

EVENTS_PATH = "/slack/events"
COMMAND = "/vigil"
BOT_SCOPES = (
    "chat:write",  # the incident message, its thread, ephemeral answers, mention replies
    "app_mentions:read",  # `@Vigil <question>`
    "commands",  # `/vigil`
    "channels:history",  # conversations.history/replies: the notifier finds its own earlier posts by metadata
    "groups:history",  # the same in a private channel
    "metadata.message:read",  # ... and reads that metadata back
    "channels:read",  # conversations.list: a channel configured by #name
    "groups:read",  # the same for a private channel
)
"""No `chat:write.public`: the bot must be a member of the incident channel anyway, to read its history."""
BOT_EVENTS = ("app_mention",)


def events_url(base_url: str) -> str:
    """`<base>/slack/events` for an http(s) base URL; ValueError for anything else."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"the base URL must be http(s)://host[:port][/path], not {base_url!r}")
    return base_url.rstrip("/") + EVENTS_PATH


def slack_manifest(base_url: str, *, name: str = "Vigil", socket_mode: bool = False) -> dict[str, Any]:
    """The manifest as a dict (YAML or JSON to Slack alike). With `socket_mode` Slack sends everything over the
    app's WebSocket and the manifest names no URL (the base URL is still checked)."""
    url = events_url(base_url)
    command: dict[str, Any] = {
        "command": COMMAND,
        "description": "Open incidents, or one incident's status",
        "usage_hint": "incidents | status <incident-id>",
        "should_escape": False,
    }
    event_subscriptions: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if not socket_mode:
        command["url"] = url
        event_subscriptions["request_url"] = url
        interactivity["request_url"] = url
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "Incident response: diagnoses, approvals and answers from your runbooks.",
            "background_color": "#1d2b3a",
        },
        "features": {
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": event_subscriptions,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }

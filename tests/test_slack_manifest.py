"""The Slack app manifest: its structure, URLs and scopes, and `vigil slack manifest` printing it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from vigil.cli import app
from vigil.integrations.slack.manifest import slack_manifest
from vigil.settings import get_settings

REQUIRED_SCOPES = {
    "chat:write",
    "app_mentions:read",
    "commands",
    "channels:history",
    "groups:history",
    "metadata.message:read",
}


def request_urls(manifest: dict[str, Any]) -> list[str | None]:
    settings = manifest["settings"]
    (command,) = manifest["features"]["slash_commands"]
    return [
        settings["event_subscriptions"].get("request_url"),
        settings["interactivity"].get("request_url"),
        command.get("url"),
    ]


def test_manifest_structure_urls_and_scopes() -> None:
    manifest = slack_manifest("https://vigil.example.com/")
    assert manifest["_metadata"] == {"major_version": 1, "minor_version": 1}
    assert manifest["display_information"]["name"] == "Vigil"
    assert len(manifest["display_information"]["description"]) <= 140  # Slack's limit
    assert manifest["features"]["bot_user"] == {"display_name": "Vigil", "always_online": True}
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/vigil"
    assert command["should_escape"] is False
    assert request_urls(manifest) == ["https://vigil.example.com/slack/events"] * 3
    settings = manifest["settings"]
    assert settings["event_subscriptions"]["bot_events"] == ["app_mention"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert set(scopes) >= REQUIRED_SCOPES
    assert "chat:write.public" not in scopes
    assert len(scopes) == len(set(scopes))
    assert json.loads(json.dumps(manifest)) == manifest  # plain JSON data, as Slack takes it


def test_manifest_behind_a_path_and_over_socket_mode() -> None:
    behind = slack_manifest("https://proxy.example/vigil")
    assert request_urls(behind) == ["https://proxy.example/vigil/slack/events"] * 3
    socket = slack_manifest("http://127.0.0.1:8000", socket_mode=True)
    assert socket["settings"]["socket_mode_enabled"] is True
    assert request_urls(socket) == [None, None, None]
    assert socket["settings"]["event_subscriptions"]["bot_events"] == ["app_mention"]


@pytest.mark.parametrize("url", ["", "vigil.example.com", "ftp://vigil.example.com", "https://x.example/?a=1"])
def test_manifest_refuses_a_base_that_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        slack_manifest(url)


@pytest.fixture
def api_address(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("VIGIL_API_HOST", "10.1.2.3")
    monkeypatch.setenv("VIGIL_API_PORT", "8111")
    get_settings.cache_clear()
    yield "http://10.1.2.3:8111"
    get_settings.cache_clear()


def test_cli_prints_yaml_for_the_configured_api(api_address: str) -> None:
    result = CliRunner().invoke(app, ["slack", "manifest"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed == slack_manifest(api_address)
    assert request_urls(printed) == [f"{api_address}/slack/events"] * 3
    assert "public HTTPS" in result.stderr  # Slack cannot call http://10.1.2.3


def test_cli_json_with_a_public_url(api_address: str) -> None:
    result = CliRunner().invoke(app, ["slack", "manifest", "--json", "--url", "https://vigil.example.com"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == slack_manifest("https://vigil.example.com")
    assert result.stderr == ""

    socket = CliRunner().invoke(app, ["slack", "manifest", "--json", "--socket-mode"])
    assert socket.exit_code == 0, socket.output
    assert json.loads(socket.stdout)["settings"]["socket_mode_enabled"] is True
    assert socket.stderr == ""


def test_cli_refuses_a_bad_url(api_address: str) -> None:
    result = CliRunner().invoke(app, ["slack", "manifest", "--url", "not a url"])
    assert result.exit_code == 2
    assert "base URL" in result.stderr
    assert result.stdout == ""

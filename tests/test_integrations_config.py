"""Integrations chosen by settings: off when unset, an error at start when half-configured or refused."""

from __future__ import annotations

import io
from contextlib import AsyncExitStack

import pytest
from pydantic import SecretStr
from rich.console import Console
from temporalio.client import Client

from tests.conftest import make_settings
from tests.fakes.jira_api import FakeJira
from tests.fakes.slack_api import FakeSlack
from vigil.health import print_integrations
from vigil.integrations.base import IntegrationConfigError
from vigil.store.database import Store
from workers.main import build_worker


async def test_half_configured_integrations_stop_the_worker_naming_every_gap(
    temporal_client: Client, database_url: str, store: Store
) -> None:
    settings = make_settings(
        database_url,
        temporal_client,
        slack_bot_token=SecretStr("xoxb-only-a-token"),
        jira_url="http://127.0.0.1:1",
        jira_project="OPS",
    )
    async with AsyncExitStack() as stack:
        with pytest.raises(IntegrationConfigError) as raised:
            await build_worker("integrations", temporal_client, stack, settings)
    message = str(raised.value)
    assert "VIGIL_SLACK_CHANNEL" in message
    assert "JIRA_USER" in message
    assert "JIRA_API_TOKEN" in message
    assert "xoxb-only-a-token" not in message


async def test_a_refused_token_stops_the_worker_and_vigil_status_says_so(
    temporal_client: Client, database_url: str, store: Store
) -> None:
    with FakeSlack() as slack, FakeJira() as jira:
        settings = make_settings(
            database_url,
            temporal_client,
            slack_bot_token=SecretStr("xoxb-wrong"),
            slack_channel="C0VIGIL",
            slack_api_url=slack.url,
            jira_url=jira.url,
            jira_user=jira.user,
            jira_api_token=SecretStr(jira.token),
            jira_project=jira.project,
        )
        async with AsyncExitStack() as stack:
            with pytest.raises(IntegrationConfigError) as raised:
                await build_worker("integrations", temporal_client, stack, settings)
        assert "SLACK_BOT_TOKEN" in str(raised.value)
        assert "xoxb-wrong" not in str(raised.value)
        assert "jira" not in str(raised.value).lower()  # Jira accepted its token: only Slack is named

        out = io.StringIO()
        assert await print_integrations(settings, Console(file=out, width=200)) == 1
        assert "SLACK_BOT_TOKEN" in out.getvalue()

        good = settings.model_copy(update={"slack_bot_token": SecretStr(slack.bot_token)})
        out = io.StringIO()
        assert await print_integrations(good, Console(file=out, width=200)) == 0
        shown = out.getvalue()
        assert "Slack" in shown
        assert "Jira" in shown
        assert "off: no code host configured" in shown

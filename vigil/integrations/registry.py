"""Which integration plugins run, chosen by settings: each is on when its settings are complete, off when none
is set, and a half-configured one is an error at start (every problem listed), never a silent skip."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from vigil.integrations.base import CodeHost, IntegrationConfigError, IntegrationUnavailable, Notifier, TicketTracker
from vigil.integrations.github_host import DeployLookup, GitHubCodeHost
from vigil.integrations.jira_tracker import JiraTracker
from vigil.integrations.models import IntegrationKind
from vigil.integrations.owners import ServiceOwners
from vigil.integrations.slack.notifier import SlackNotifier
from vigil.settings import Settings

UNCONFIGURED = {
    IntegrationKind.NOTIFIER: "no notifier configured (Slack: SLACK_BOT_TOKEN and VIGIL_SLACK_CHANNEL)",
    IntegrationKind.TICKET: (
        "no ticket tracker configured (Jira: JIRA_URL, JIRA_USER, JIRA_API_TOKEN, VIGIL_JIRA_PROJECT)"
    ),
    IntegrationKind.CODE_HOST: "no code host configured (GitHub: GITHUB_TOKEN)",
}


@dataclass
class Integrations:
    notifier: Notifier | None = None
    tracker: TicketTracker | None = None
    code_host: CodeHost | None = None

    def plugins(self) -> dict[IntegrationKind, Notifier | TicketTracker | CodeHost | None]:
        return {
            IntegrationKind.NOTIFIER: self.notifier,
            IntegrationKind.TICKET: self.tracker,
            IntegrationKind.CODE_HOST: self.code_host,
        }

    async def check(self) -> dict[str, str]:
        """Each configured plugin says who it is on its service; every refusal (a bad token, an unknown project)
        is collected into one error."""
        identities: dict[str, str] = {}
        problems: list[str] = []
        for kind, plugin in self.plugins().items():
            if plugin is None:
                identities[kind.value] = f"off: {UNCONFIGURED[kind]}"
                continue
            try:
                identities[kind.value] = await plugin.check()
            except IntegrationUnavailable as exc:  # down now is not misconfigured: syncs retry until it is back
                identities[kind.value] = f"{plugin.name}: unreachable at start ({exc})"
            except IntegrationConfigError as exc:
                problems.append(f"{plugin.name}: {exc}")
        if problems:
            raise IntegrationConfigError("; ".join(problems))
        return identities

    async def close(self) -> None:
        for plugin in self.plugins().values():
            if plugin is not None:
                with contextlib.suppress(Exception):
                    await plugin.close()


def _missing(names: Mapping[str, object]) -> list[str]:
    return [name for name, value in names.items() if value in (None, "")]


def configured_integrations(settings: Settings, deploys: DeployLookup) -> Integrations:
    """The plugins the settings ask for (`deploys`: where the code host finds the suspect deploy). Raises
    IntegrationConfigError naming every incomplete integration."""
    problems: list[str] = []
    groups = {
        "Slack": {"SLACK_BOT_TOKEN": settings.slack_bot_token, "VIGIL_SLACK_CHANNEL": settings.slack_channel},
        "Jira": {
            "JIRA_URL": settings.jira_url,
            "JIRA_USER": settings.jira_user,
            "JIRA_API_TOKEN": settings.jira_api_token,
            "VIGIL_JIRA_PROJECT": settings.jira_project,
        },
    }
    enabled: dict[str, bool] = {}
    for name, required in groups.items():
        missing = _missing(required)
        enabled[name] = not missing
        if missing and len(missing) < len(required):
            problems.append(f"{name} is half configured: set {', '.join(missing)} too (or unset the others)")
    try:
        owners = ServiceOwners.load(settings.service_owners_path)
    except IntegrationConfigError as exc:
        problems.append(str(exc))
        owners = ServiceOwners()
    if problems:
        raise IntegrationConfigError("; ".join(problems))
    return Integrations(
        notifier=SlackNotifier(settings) if enabled["Slack"] else None,
        tracker=JiraTracker(settings, owners) if enabled["Jira"] else None,
        code_host=GitHubCodeHost(settings, owners, deploys) if settings.github_token else None,
    )

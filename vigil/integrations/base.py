"""The plugin interfaces of `vigil-integrations` (DESIGN.md, "Integrations"): a notifier, a ticket tracker and a
code host. Each is stateless between calls: it gets the incident and its own state, and returns the new state.

Errors say what the activity does next: `IntegrationUnavailable` is retried with backoff (or after the server's
Retry-After), `IntegrationRejected` is not (the request itself is wrong), and `IntegrationConfigError` stops
the integrations worker at start with every problem listed (`vigil status` shows it).
"""

from __future__ import annotations

from typing import Protocol

from vigil.integrations.models import (
    CodeHostInput,
    CodeHostState,
    NotifierState,
    NotifyInput,
    TicketInput,
    TicketState,
)


class IntegrationConfigError(Exception):
    """Settings that cannot work (a missing companion setting, a token the service refuses)."""


class IntegrationUnavailable(Exception):
    """The service is down, failing (5xx) or rate-limiting: try again, after `retry_after` seconds when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IntegrationRejected(Exception):
    """The service refused the request for good (4xx other than 429): retrying changes nothing."""


class Notifier(Protocol):
    name: str

    async def check(self) -> str:
        """Who Vigil is on the service (`auth.test`); raises IntegrationConfigError when refused."""
        ...

    async def sync(self, data: NotifyInput) -> NotifierState:
        """Post the incident's one message (or find it: never two), update it in place, and reply in its thread
        with the events not told yet."""
        ...

    async def close(self) -> None: ...


class TicketTracker(Protocol):
    name: str

    async def check(self) -> str: ...

    async def sync(self, data: TicketInput) -> TicketState | None:
        """Find (by the incident's label) or create the ticket, comment, transition; None: no ticket needed."""
        ...

    async def close(self) -> None: ...


class CodeHost(Protocol):
    name: str

    async def check(self) -> str: ...

    async def sync(self, data: CodeHostInput) -> CodeHostState | None:
        """For code-related incidents: find or create the issue, with the suspect deploy's commits; None: not
        code-related, or no repository known for the service."""
        ...

    async def close(self) -> None: ...

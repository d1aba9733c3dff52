"""The Jira ticket tracker: one ticket per incident that calls for one, kept up to date as the incident goes on.

An incident gets a ticket when it is severe enough (`VIGIL_JIRA_MIN_SEVERITY`) or code-related. The ticket
carries the label `vigil-<incident id>`: before creating one, the tracker searches for that label, so a worker
that died between creating the ticket and answering the workflow never leaves two. A new ticket goes to the
service's owner (`jira_assignee` in the owners file) in the creating request itself; an owner Jira does not know
or refuses leaves it unassigned, with a comment saying why. Each sync then comments the timeline events not told
yet (one comment per sync), notes merged pull requests (taking the "merged" transition when the ticket offers
it) and, when the incident closes, takes the "done" transition once. Every comment ends with a reference
(`vigil:events:3-7`) that a retried sync looks for among the ticket's latest comments, so a retry after a
partial sync does not say the same thing twice.

The `jira` library is synchronous: each call runs in this tracker's own small thread pool, with one client per
thread (a `requests` session is not meant to be shared between threads). The library does not retry (Temporal
does, with backoff or after Jira's Retry-After), and its errors become `IntegrationUnavailable` (429, 5xx,
unreachable) or `IntegrationRejected` (any other refusal) with Jira's own message, never the request's headers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from jira import JIRA, JIRAError

from vigil.integrations.base import IntegrationConfigError, IntegrationRejected, IntegrationUnavailable
from vigil.integrations.models import BriefEvent, IncidentBrief, PullRequestRef, TicketInput, TicketState
from vigil.integrations.owners import ServiceOwners
from vigil.integrations.text import (
    MAX_POSTMORTEM,
    MAX_TEXT,
    VIGIL_LABEL,
    clip,
    clip_block,
    incident_description,
    incident_label,
    is_closed,
    issue_title,
    links_for,
    retry_after_seconds,
    timeline_comment,
    untold,
    url_pattern,
)
from vigil.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

REQUEST_TIMEOUT_SECONDS = 10
RECENT_COMMENTS = 50
"""How many of the ticket's latest comments a sync reads to find the references of its own earlier posts."""

_WIKI_SPECIAL = re.compile(r"([\\\[\]{}|*_^~!+])")
_WIKI_URL = url_pattern("|[]{}")


def wiki_text(text: str, limit: int = MAX_TEXT) -> str:
    """Text from the incident (alert titles, log excerpts) as literal Jira wiki markup: one line, every markup
    character escaped, so a log line cannot turn into a link, a macro or a heading in the ticket."""
    return _WIKI_SPECIAL.sub(r"\\\1", clip(text, limit))


class _Wiki:
    """Jira wiki markup, for the content `vigil.integrations.text` decides."""

    def text(self, value: str, limit: int = MAX_TEXT) -> str:
        return wiki_text(value, limit)

    def strong(self, markup: str) -> str:
        return f"*{markup}*"

    def keyword(self, markup: str) -> str:
        return markup

    def heading(self, title: str) -> list[str]:
        return [f"h3. {title}"]

    def intro(self, line: str) -> list[str]:
        return [line]

    def item(self, markup: str) -> str:
        return f"* {markup}"

    def link(self, url: str, name: str) -> str:
        return f"[{name}|{url}]"

    def bare_link(self, url: str) -> str:
        return f"[{url}]"

    def is_url(self, value: str) -> bool:
        return _WIKI_URL.fullmatch(value) is not None


WIKI = _Wiki()


class _Comments:
    """The ticket's recent comments, read once per sync when something is about to be posted, and the posting of
    a comment unless one with the same reference is already there."""

    def __init__(self, jira: JIRA, key: str) -> None:
        self._jira = jira
        self._key = key
        self._bodies: list[str] | None = None

    def _references(self) -> list[str]:
        if self._bodies is None:
            recent = self._jira.comments(self._key, max_results=RECENT_COMMENTS, order_by="-created")
            self._bodies = [str(getattr(comment, "body", "") or "") for comment in recent]
        return self._bodies

    def post(self, body: str, reference: str) -> bool:
        """Post `body` ending with `(vigil:<reference>)`; False when an earlier attempt already posted it."""
        tag = f"(vigil:{reference})"
        if any(tag in existing for existing in self._references()):
            return False
        text = f"{body}\n\n{tag}"
        self._jira.add_comment(self._key, text)
        self._references().append(text)
        return True


class JiraTracker:
    """`TicketTracker` on Jira (Cloud or Server/Data Center), REST API v2 through the `jira` library."""

    name = "jira"

    def __init__(self, settings: Settings, owners: ServiceOwners, *, threads: int = 4) -> None:
        if not (settings.jira_url and settings.jira_user and settings.jira_api_token and settings.jira_project):
            raise IntegrationConfigError("Jira needs JIRA_URL, JIRA_USER, JIRA_API_TOKEN and VIGIL_JIRA_PROJECT")
        self._settings = settings
        self._owners = owners
        self._url = settings.jira_url.rstrip("/")
        self._user = settings.jira_user
        self._token = settings.jira_api_token
        self._project = settings.jira_project.strip()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vigil-jira")
        self._local = threading.local()
        self._clients: list[JIRA] = []
        self._lock = threading.Lock()
        self._deployment: str | None = None
        self._deployment_known = False

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _jira(self) -> JIRA:
        """This thread's client, told whether the server is Cloud (which changes how search and assignment work)."""
        client: JIRA | None = getattr(self._local, "client", None)
        if client is None:
            client = JIRA(
                server=self._url,
                basic_auth=(self._user, self._token.get_secret_value()),
                max_retries=0,
                get_server_info=False,
                timeout=REQUEST_TIMEOUT_SECONDS,
                logging=False,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        if not self._deployment_known:
            info = client.server_info()
            deployment = info.get("deploymentType") if isinstance(info, dict) else None
            with self._lock:
                self._deployment = deployment if isinstance(deployment, str) else None
                self._deployment_known = True
        client.deploymentType = self._deployment
        return client

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _guard, call)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            close_session: Callable[[], None] = client.close  # untyped in the library
            close_session()

    # -- check ---------------------------------------------------------------------------------------------------

    async def check(self) -> str:
        return await self._run(self._check)

    def _check(self) -> str:
        try:
            jira = self._jira()
            me = jira.myself()
        except JIRAError as exc:
            if exc.status_code in (401, 403):
                raise IntegrationConfigError(
                    f"Jira at {self._url} refused the credentials of {self._user} (HTTP {exc.status_code}): "
                    "check JIRA_USER and JIRA_API_TOKEN"
                ) from None
            raise
        try:
            jira.project(self._project)
        except JIRAError as exc:
            if exc.status_code in (403, 404):
                raise IntegrationConfigError(
                    f"Jira project {self._project} does not exist at {self._url} or {self._user} cannot see it"
                ) from None
            raise
        who = me.get("emailAddress") or me.get("name") or me.get("displayName") or self._user
        return f"Jira: {who} on {self._url}, project {self._project}"

    # -- sync ----------------------------------------------------------------------------------------------------

    def wanted(self, brief: IncidentBrief) -> bool:
        """Whether the incident calls for a ticket: severe enough, or code-related."""
        return brief.severity.rank <= self._settings.jira_min_severity.rank or brief.code_related

    async def sync(self, data: TicketInput) -> TicketState | None:
        if data.state is None and not self.wanted(data.brief):
            return None
        return await self._run(lambda: self._sync(data))

    def _sync(self, data: TicketInput) -> TicketState:
        brief = data.brief
        jira = self._jira()
        if data.state is not None:
            state = data.state
            comments = _Comments(jira, state.key)
        else:
            state, created, unassigned = self._find_or_create(jira, brief)
            comments = _Comments(jira, state.key)
            if unassigned is not None:
                self._note_unassigned(comments, state.key, unassigned)
            elif not created:
                state = self._assign(jira, brief, state, comments)
        state = self._comment_events(data.events, state, comments)
        closing = is_closed(brief) and not state.done
        new_prs = brief.pull_requests[state.merged_seen :]
        if new_prs:
            comments.post(_merged_comment(new_prs), f"merged:{state.merged_seen + 1}-{len(brief.pull_requests)}")
            if not closing and not state.done:
                self._transition(jira, state.key, self._settings.jira_merged_transition, comments)
            state = state.model_copy(update={"merged_seen": len(brief.pull_requests)})
        if closing:
            if data.postmortem:
                draft = clip_block(data.postmortem, MAX_POSTMORTEM).replace("{noformat}", "{ noformat}")
                comments.post(f"Postmortem draft (Markdown):\n{{noformat}}\n{draft}\n{{noformat}}", "postmortem")
            self._transition(jira, state.key, self._settings.jira_done_transition, comments)
            state = state.model_copy(update={"done": True})
        return state

    def _find_or_create(self, jira: JIRA, brief: IncidentBrief) -> tuple[TicketState, bool, tuple[str, str] | None]:
        """The incident's ticket, found by its label or created (given to the service's owner in the same request).
        Returns it, whether it was created, and (owner, why) when the owner could not be given a new ticket."""
        label = incident_label(brief.incident_id)
        owner = self._owner(brief)
        jql = f'project = "{self._project}" AND labels = "{label}" ORDER BY created ASC'
        found = jira.search_issues(jql, maxResults=5, fields="assignee,labels", json_result=True)
        issues = found.get("issues", []) if isinstance(found, dict) else []
        if issues:
            issue = issues[0]
            key = str(issue["key"])
            assignee = (issue.get("fields") or {}).get("assignee") or None
            log.info("found Jira ticket %s of %s", key, brief.incident_id)
            return TicketState(key=key, url=self._browse(key), assignee=_user_name(assignee, owner)), False, None
        fields: dict[str, Any] = {
            "project": {"key": self._project},
            "summary": issue_title(brief, 255),
            "description": "\n".join(incident_description(brief, links_for(self._settings, brief), WIKI)),
            "issuetype": {"name": self._settings.jira_issue_type},
            "labels": [VIGIL_LABEL, label],
        }
        unassigned: tuple[str, str] | None = None
        if owner is not None:
            assignee_field, problem = self._assignee_field(jira, owner)
            if assignee_field is not None:
                fields["assignee"] = assignee_field
            else:
                unassigned = (owner, problem)
        try:
            created = jira.create_issue(fields=fields, prefetch=False)
        except JIRAError as exc:
            if (
                owner is None
                or "assignee" not in fields
                or exc.status_code != 400
                or "assignee" not in _error_fields(exc)
            ):
                raise
            unassigned = (owner, _jira_message(exc))  # Jira will not give this owner the ticket: create it unassigned
            del fields["assignee"]
            created = jira.create_issue(fields=fields, prefetch=False)
        key = str(created.key)
        log.info("created Jira ticket %s for %s", key, brief.incident_id)
        assigned = owner if "assignee" in fields else None
        return TicketState(key=key, url=self._browse(key), assignee=assigned), True, unassigned

    def _assignee_field(self, jira: JIRA, owner: str) -> tuple[dict[str, str] | None, str]:
        """The issue's `assignee` field for the owner as the owners file names them (a user name, an email or a
        Cloud account id), found by Jira's user search; else None and why."""
        cloud = self._deployment == "Cloud"
        identifier = "accountId" if cloud else "name"
        try:
            if cloud:
                users = jira.search_users(query=owner, maxResults=20)
            else:
                users = jira.search_users(user=owner, maxResults=20)
        except JIRAError as exc:
            if _transient(exc):
                raise
            return None, _jira_message(exc)
        candidates = [user.raw for user in users if isinstance(user.raw, dict) and user.raw.get(identifier)]
        exact = [user for user in candidates if owner in (user.get(identifier), user.get("emailAddress"))]
        if not candidates:
            return None, f"no Jira user matches {owner}"
        chosen = (exact or candidates)[0]
        return {identifier: str(chosen[identifier])}, ""

    def _note_unassigned(self, comments: _Comments, key: str, unassigned: tuple[str, str]) -> None:
        owner, reason = unassigned
        log.warning("could not assign %s to %s: %s", key, owner, reason)
        comments.post(f"Vigil could not assign this ticket to {wiki_text(owner)}: {wiki_text(reason)}", "assign")

    def _assign(self, jira: JIRA, brief: IncidentBrief, state: TicketState, comments: _Comments) -> TicketState:
        """Give a found, unassigned ticket (created before an owner was known) to the service's owner."""
        owner = self._owner(brief)
        if owner is None or state.assignee is not None:
            return state
        try:
            jira.assign_issue(state.key, owner)
        except JIRAError as exc:
            if _transient(exc):
                raise
            self._note_unassigned(comments, state.key, (owner, _jira_message(exc)))
            return state
        return state.model_copy(update={"assignee": owner})

    def _comment_events(self, events: list[BriefEvent], state: TicketState, comments: _Comments) -> TicketState:
        new = untold(events, state.told_seq)
        if not new:
            return state
        comments.post(timeline_comment(new, WIKI), f"events:{new[0].seq}-{new[-1].seq}")
        return state.model_copy(update={"told_seq": new[-1].seq})

    def _transition(self, jira: JIRA, key: str, name: str, comments: _Comments) -> bool:
        """Take the transition called `name` (any case) if the ticket offers it; otherwise say so on the ticket."""
        offered = jira.transitions(key)
        wanted = name.strip().casefold()
        match = next((t for t in offered if str(t.get("name", "")).strip().casefold() == wanted), None)
        if match is None:
            status = (jira.issue(key, fields="status").raw.get("fields") or {}).get("status") or {}
            if str(status.get("name", "")).strip().casefold() == wanted:
                return True  # already there (a retry after the transition was taken)
            names = ", ".join(str(t.get("name", "")) for t in offered) or "none"
            comments.post(
                f"Vigil did not move this ticket to {wiki_text(name)}: the ticket offers no such transition now "
                f"(offered: {wiki_text(names)}).",
                f"no-transition:{wanted}",
            )
            return False
        jira.transition_issue(key, str(match["id"]))
        return True

    def _owner(self, brief: IncidentBrief) -> str | None:
        return self._owners.assignee(brief.service) or self._owners.assignee(brief.component)

    def _browse(self, key: str) -> str:
        return f"{self._url}/browse/{quote(key)}"


def _guard(call: Callable[[], T]) -> T:
    """Run a blocking Jira call, its failures as the integration errors the activity understands."""
    try:
        return call()
    except JIRAError as exc:
        raise _mapped(exc) from None
    except requests.exceptions.RequestException as exc:
        raise IntegrationUnavailable(f"Jira unreachable: {type(exc).__name__}: {clip(str(exc), 300)}") from None


def _mapped(exc: JIRAError) -> Exception:
    status = exc.status_code
    message = _jira_message(exc)
    if status == 429:
        headers = exc.response.headers if exc.response is not None else {}
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        return IntegrationUnavailable(f"Jira is rate-limiting (429): {message}", retry_after=retry_after)
    if status is not None and status >= 500:
        return IntegrationUnavailable(f"Jira failed (HTTP {status}): {message}")
    if status is None:
        return IntegrationRejected(f"Jira: {message}")
    return IntegrationRejected(f"Jira refused the request (HTTP {status}): {message}")


def _transient(exc: JIRAError) -> bool:
    return exc.status_code is not None and (exc.status_code == 429 or exc.status_code >= 500)


def _error_fields(exc: JIRAError) -> set[str]:
    """The fields Jira's 400 names in its `errors` object."""
    try:
        body = exc.response.json() if exc.response is not None else None
    except ValueError:
        return set()
    errors = body.get("errors") if isinstance(body, dict) else None
    return {str(name) for name in errors} if isinstance(errors, dict) else set()


def _jira_message(exc: JIRAError) -> str:
    """Jira's own error text (never `str(exc)`, which prints the request's headers, Authorization included)."""
    return clip(str(exc.text or "no message"), 300)


def _user_name(user: object, owner: str | None) -> str | None:
    """Who a found ticket is assigned to: the owner as the owners file names them when it is them."""
    if not isinstance(user, dict):
        return None
    names = [user.get(key) for key in ("name", "emailAddress", "accountId", "displayName")]
    present = [name for name in names if isinstance(name, str) and name]
    if owner is not None and owner in present:
        return owner
    return present[0] if present else "someone"


def _merged_comment(pull_requests: list[PullRequestRef]) -> str:
    lines = ["Pull requests naming this incident were merged:"]
    for pr in pull_requests:
        by = f" by {wiki_text(pr.merged_by, 100)}" if pr.merged_by else ""
        name = f"{wiki_text(pr.repository, 200)}#{pr.number}"
        link = WIKI.link(pr.url, name) if WIKI.is_url(pr.url) else name
        lines.append(f"* {link} {wiki_text(pr.title, 300)}{by}")
    return "\n".join(lines)

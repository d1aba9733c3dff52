"""The GitHub code host: an issue for each code-related incident, in the repository of the service's code, with
the commits of the suspect deploy as evidence.

The repository comes from the service owners file (`github_repo` of the incident's service, else of its
component); an incident that is not code-related, or whose service has no repository, gets nothing. The issue
carries the label `vigil-<incident id>`, looked for before one is created, so a worker that died between creating
it and answering the workflow never leaves two. The suspect deploy is the latest deploy of the service at or before
the incident opened; the commits between the deploy before it and it (`compare`) become `CodeHostState.commits`
and one comment. Later syncs comment the timeline events not told yet; when the incident closes the issue gets a
comment but stays open (the fix may still be pending). Every comment carries a hidden reference
(`<!-- vigil:events:3-7 -->`) that a retried sync looks for, so a retry after a partial sync posts nothing twice.

PyGithub is synchronous: calls run in this host's own thread pool, one client per thread, without the library's
retries (Temporal retries, after GitHub's Retry-After or rate-limit reset when it gave one).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import github
import requests
from github import Consts, Github
from github.Commit import Commit
from github.GithubException import GithubException, RateLimitExceededException
from github.Issue import Issue
from github.Repository import Repository

from vigil.integrations.base import IntegrationConfigError, IntegrationRejected, IntegrationUnavailable
from vigil.integrations.models import CodeHostInput, CodeHostState, CommitRef, IncidentBrief
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
    utc_stamp,
)
from vigil.models import StoredDeployEvent
from vigil.settings import Settings

if TYPE_CHECKING:
    from vigil.store.database import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

DeployLookup = Callable[[str, datetime], Awaitable[list[StoredDeployEvent]]]
"""The deploys of a service at or before a time, newest first."""

REQUEST_TIMEOUT_SECONDS = 10
MAX_COMMITS = 20
COMPARE_FIRST_PAGE = 250
"""Commits GitHub sends with a comparison; the newest `MAX_COMMITS` of them are kept."""
DEPLOY_LOOKBACK = timedelta(days=90)
DEPLOYS_KEPT = 20
"""How many of the newest deploys the store lookup returns (the code host needs two)."""
_DEPLOY_PAGE = 500


def store_deploy_lookup(store: Store) -> DeployLookup:
    """The DeployLookup over Vigil's store: deploys of the service in the `DEPLOY_LOOKBACK` before `at` (and at
    `at`), the newest `DEPLOYS_KEPT` of them, newest first."""

    async def lookup(service: str, at: datetime) -> list[StoredDeployEvent]:
        end = at + timedelta(microseconds=1)  # the store's window is start <= ts < end: include `at` itself
        start = at - DEPLOY_LOOKBACK
        newest: deque[StoredDeployEvent] = deque(maxlen=DEPLOYS_KEPT)
        seen: set[int] = set()
        while True:  # the store answers oldest first: page forward, keeping the newest
            page = await store.deploys(service=service, start=start, end=end, limit=_DEPLOY_PAGE)
            for deploy in page:
                if deploy.id not in seen:
                    seen.add(deploy.id)
                    newest.append(deploy)
            if len(page) < _DEPLOY_PAGE or page[-1].ts <= start:
                break
            start = page[-1].ts
            seen = {deploy.id for deploy in page if deploy.ts == start}
        return list(reversed(newest))

    return lookup


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")
_MARKDOWN_URL = url_pattern("()<>[]")


def md_text(text: str, limit: int = MAX_TEXT) -> str:
    """Text from the incident as literal GitHub Markdown: one line, markup escaped, and no @mention or #reference
    that would notify someone or link an unrelated issue."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", clip(text, limit))
    return escaped.replace("@", "@\u200b")


class _Markdown:
    """GitHub Markdown, for the content `vigil.integrations.text` decides."""

    def text(self, value: str, limit: int = MAX_TEXT) -> str:
        return md_text(value, limit)

    def strong(self, markup: str) -> str:
        return f"**{markup}**"

    def keyword(self, markup: str) -> str:
        return f"**{markup}**"

    def heading(self, title: str) -> list[str]:
        return [f"### {title}", ""]

    def intro(self, line: str) -> list[str]:
        return [line, ""]

    def item(self, markup: str) -> str:
        return f"- {markup}"

    def link(self, url: str, name: str) -> str:
        return f"[{name}]({url})"

    def bare_link(self, url: str) -> str:
        return f"<{url}>"

    def is_url(self, value: str) -> bool:
        return _MARKDOWN_URL.fullmatch(value) is not None


MARKDOWN = _Markdown()


def _reference(tag: str) -> str:
    return f"<!-- vigil:{tag} -->"


class _Comments:
    """The issue's comments, read once per sync when something is about to be posted; posts each reference once."""

    def __init__(self, issue: Issue) -> None:
        self._issue = issue
        self._bodies: list[str] | None = None

    def _existing(self) -> list[str]:
        if self._bodies is None:
            self._bodies = [comment.body or "" for comment in self._issue.get_comments()]
        return self._bodies

    def post(self, body: str, tag: str) -> bool:
        reference = _reference(tag)
        if any(reference in existing for existing in self._existing()):
            return False
        text = f"{body}\n\n{reference}"
        self._issue.create_comment(text)
        self._existing().append(text)
        return True


class GitHubCodeHost:
    """`CodeHost` on GitHub or GitHub Enterprise (`VIGIL_GITHUB_URL`), through PyGithub."""

    name = "github"

    def __init__(
        self,
        settings: Settings,
        owners: ServiceOwners,
        deploys: DeployLookup,
        *,
        threads: int = 4,
        paced: bool = True,
    ) -> None:
        """`paced`: keep PyGithub's spacing of requests (0.25 s) and writes (1 s), which GitHub asks of
        integrations to stay clear of its secondary rate limits; tests against a fake server turn it off."""
        if settings.github_token is None or not settings.github_token.get_secret_value():
            raise IntegrationConfigError("GitHub needs GITHUB_TOKEN")
        self._settings = settings
        self._owners = owners
        self._deploys = deploys
        self._token = settings.github_token
        self._url = settings.github_url.rstrip("/")
        self._paced = paced
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vigil-github")
        self._local = threading.local()
        self._clients: list[Github] = []
        self._lock = threading.Lock()

    def _github(self) -> Github:
        client: Github | None = getattr(self._local, "client", None)
        if client is None:
            client = Github(
                base_url=self._url,
                auth=github.Auth.Token(self._token.get_secret_value()),
                retry=None,
                timeout=REQUEST_TIMEOUT_SECONDS,
                lazy=True,
                seconds_between_requests=Consts.DEFAULT_SECONDS_BETWEEN_REQUESTS if self._paced else None,
                seconds_between_writes=Consts.DEFAULT_SECONDS_BETWEEN_WRITES if self._paced else None,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
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
            client.close()

    async def check(self) -> str:
        return await self._run(self._check)

    def _check(self) -> str:
        try:
            login = self._github().get_user().login
        except GithubException as exc:
            if exc.status == 401:
                raise IntegrationConfigError(
                    f"GitHub at {self._url} refused GITHUB_TOKEN (HTTP 401: {_github_message(exc)})"
                ) from None
            raise
        return f"GitHub: {login} on {self._url}"

    def repository(self, brief: IncidentBrief) -> str | None:
        return self._owners.repository(brief.service) or self._owners.repository(brief.component)

    async def sync(self, data: CodeHostInput) -> CodeHostState | None:
        brief = data.brief
        if data.state is not None:
            repository: str | None = data.state.repository
        elif brief.code_related:
            repository = self.repository(brief)
        else:
            repository = None
        if repository is None:
            return None
        deploys: list[StoredDeployEvent] = []
        service = brief.service or brief.component
        if (data.state is None or not data.state.commits) and service:
            deploys = await self._deploys(service, brief.opened_at)
        return await self._run(lambda: self._sync(data, repository, deploys))

    def _sync(self, data: CodeHostInput, repository: str, deploys: list[StoredDeployEvent]) -> CodeHostState:
        brief = data.brief
        repo = self._github().get_repo(repository)
        state = data.state or self._find_or_create(repo, repository, brief)
        issue = repo.get_issue(state.number)
        comments = _Comments(issue)
        if not state.commits:
            state = self._suspect_commits(repo, deploys, state, comments)
        new = untold(data.events, state.told_seq)
        if new:
            comments.post(timeline_comment(new, MARKDOWN), f"events:{new[0].seq}-{new[-1].seq}")
            state = state.model_copy(update={"told_seq": new[-1].seq})
        if is_closed(brief) and not state.closed:
            comments.post(
                "The incident is closed in Vigil. This issue stays open until the fix is merged: close it then.",
                "closed",
            )
            if data.postmortem:
                comments.post(f"## Postmortem draft\n\n{clip_block(data.postmortem, MAX_POSTMORTEM)}", "postmortem")
            state = state.model_copy(update={"closed": True})
        return state

    def _find_or_create(self, repo: Repository, repository: str, brief: IncidentBrief) -> CodeHostState:
        label = incident_label(brief.incident_id)
        for issue in repo.get_issues(state="all", labels=[label], direction="asc"):
            if issue.pull_request is None:
                log.info("found GitHub issue %s#%d of %s", repository, issue.number, brief.incident_id)
                return CodeHostState(repository=repository, number=issue.number, url=issue.html_url)
        created = repo.create_issue(title=issue_title(brief, 256), body=self._body(brief), labels=[VIGIL_LABEL, label])
        log.info("created GitHub issue %s#%d for %s", repository, created.number, brief.incident_id)
        return CodeHostState(repository=repository, number=created.number, url=created.html_url)

    def _suspect_commits(
        self, repo: Repository, deploys: list[StoredDeployEvent], state: CodeHostState, comments: _Comments
    ) -> CodeHostState:
        """The commits the suspect deploy brought (since the deploy before it), kept and commented once."""
        with_commit = [deploy for deploy in deploys if deploy.commit]
        if not with_commit:
            return state
        suspect = with_commit[0]
        previous = with_commit[1] if len(with_commit) > 1 else None
        assert suspect.commit is not None
        total: int
        found: list[Commit]
        if previous is not None and previous.commit is not None:
            if previous.commit == suspect.commit:
                return state
            comparison = repo.compare(previous.commit, suspect.commit)
            total = comparison.total_commits  # completes the comparison: its first page of commits comes with it
            found = list(itertools.islice(comparison.commits, COMPARE_FIRST_PAGE))
        else:
            found = [repo.get_commit(suspect.commit)]
            total = 1
        commits = [_commit_ref(commit) for commit in found[-MAX_COMMITS:]]
        if not commits:
            return state
        comments.post(_commits_comment(suspect, previous, commits, total), "commits")
        return state.model_copy(update={"commits": commits})

    def _body(self, brief: IncidentBrief) -> str:
        lines = incident_description(brief, links_for(self._settings, brief), MARKDOWN)
        lines += ["", "_Opened by Vigil. Name the incident id in the fixing pull request: Vigil notes its merge._"]
        return "\n".join(lines)


def _guard(call: Callable[[], T]) -> T:
    """Run a blocking PyGithub call, its failures as the integration errors the activity understands."""
    try:
        return call()
    except GithubException as exc:
        raise _mapped(exc) from None
    except requests.exceptions.RequestException as exc:
        raise IntegrationUnavailable(f"GitHub unreachable: {type(exc).__name__}: {clip(str(exc), 300)}") from None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _rate_limit_wait(headers: Mapping[str, str] | None) -> float | None:
    """Seconds until GitHub takes requests again: its Retry-After, else the rate-limit reset when none is left."""
    retry_after = retry_after_seconds(_header(headers, "retry-after"))
    if retry_after is not None:
        return retry_after
    reset = _header(headers, "x-ratelimit-reset")
    if _header(headers, "x-ratelimit-remaining") == "0" and reset and reset.isdigit():
        return retry_after_seconds(str(max(int(reset) - time.time(), 0.0)))
    return None


def _mapped(exc: GithubException) -> Exception:
    status = exc.status
    message = _github_message(exc)
    wait = _rate_limit_wait(exc.headers)
    if (
        isinstance(exc, RateLimitExceededException)
        or status == 429
        or (status == 403 and (wait is not None or "rate limit" in message.lower()))
    ):
        return IntegrationUnavailable(f"GitHub is rate-limiting (HTTP {status}): {message}", retry_after=wait)
    if status >= 500:
        return IntegrationUnavailable(f"GitHub failed (HTTP {status}): {message}")
    return IntegrationRejected(f"GitHub refused the request (HTTP {status}): {message}")


def _github_message(exc: GithubException) -> str:
    data = exc.data
    message = data.get("message") if isinstance(data, dict) else None
    return clip(str(message or exc.message or "no message"), 300)


def _commit_ref(commit: Commit) -> CommitRef:
    message = (commit.commit.message or "").splitlines()
    author_login = commit.author.login if commit.author is not None else None
    author = author_login or (commit.commit.author.name if commit.commit.author is not None else None)
    return CommitRef(
        sha=commit.sha, message=clip(message[0] if message else "", 300), author=author, url=commit.html_url
    )


def _commits_comment(
    suspect: StoredDeployEvent, previous: StoredDeployEvent | None, commits: list[CommitRef], total: int
) -> str:
    when = utc_stamp(suspect.ts)
    head = f"Commits of the suspect deploy {md_text(suspect.version, 200)} of {md_text(suspect.service, 200)} ({when})"
    head += f", since {md_text(previous.version, 200)}:" if previous is not None else ":"
    lines = [head, ""]
    if total > len(commits):
        lines.append(f"({len(commits)} of {total} commits shown)")
    for ref in commits:
        sha = f"`{ref.sha[:12]}`"
        if ref.url and MARKDOWN.is_url(ref.url):
            sha = MARKDOWN.link(ref.url, sha)
        by = f" ({md_text(ref.author, 100)})" if ref.author else ""
        lines.append(f"- {sha} {md_text(ref.message, 300)}{by}")
    return "\n".join(lines)

"""A fake GitHub: the REST API resources PyGithub calls for Vigil, over real HTTP, so the production code host
runs unmodified against it (`Github(base_url=fake.url, auth=Auth.Token(fake.token))`); plus what GitHub sends
to Vigil: signed webhook deliveries (`sign`, `pull_request_event`).

Resources: GET /user; GET /repos/{o}/{r}; GET /repos/{o}/{r}/issues (state and labels filters, direction) and
POST (title required: 422 with GitHub's "Validation Failed" shape otherwise); GET /repos/{o}/{r}/issues/{n};
GET and POST /repos/{o}/{r}/issues/{n}/comments; GET /repos/{o}/{r}/compare/{base}...{head} over the commits a
test seeded with `add_commits` (those after `base` up to `head`, oldest first); GET /repos/{o}/{r}/commits/{sha}.
Every request needs the token (`Authorization: token ...` or `Bearer ...`): 401 {"message": "Bad credentials"}
otherwise. Unknown repositories, issues and commits are 404 {"message": "Not Found"}.

What Vigil did is readable at any time: `issues` (repo -> number -> issue with labels and comments) and
`requests`; `fail()` (from `ThreadedServer`) makes the next calls answer an error, with headers and a body when
given (a 403 "API rate limit exceeded" with X-RateLimit-Reset, a 429 with Retry-After).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.jira_api import Handler, Json, ThreadedServer

WEB = "https://github.example"
"""Where the fake's html_url links point (its web UI, which does not exist)."""


class GitHubError(Exception):
    def __init__(self, status: int, message: str, errors: list[Json] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sign(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 header GitHub sends with `body` for a webhook with `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pull_request_event(
    repo: str,
    number: int,
    title: str,
    body: str | None = None,
    *,
    merged: bool = True,
    action: str = "closed",
    head_ref: str = "fix-branch",
    merged_by: str | None = "octocat",
    merged_at: str | None = "2026-03-01T12:30:00Z",
) -> dict[str, Any]:
    """A `pull_request` webhook payload shaped like GitHub's (the fields Vigil reads, and enough of the rest)."""
    owner = repo.split("/")[0]
    user = {"login": "dev", "id": 2, "type": "User"}
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.example/repos/{repo}/pulls/{number}",
            "id": 1000 + number,
            "html_url": f"{WEB}/{repo}/pull/{number}",
            "number": number,
            "state": "closed" if action == "closed" else "open",
            "locked": False,
            "title": title,
            "user": user,
            "body": body,
            "created_at": "2026-03-01T12:00:00Z",
            "updated_at": "2026-03-01T12:30:00Z",
            "closed_at": "2026-03-01T12:30:00Z" if action == "closed" else None,
            "merged_at": merged_at if merged else None,
            "merge_commit_sha": "f" * 40 if merged else None,
            "merged": merged,
            "merged_by": {"login": merged_by, "id": 3, "type": "User"} if merged and merged_by else None,
            "head": {"label": f"{owner}:{head_ref}", "ref": head_ref, "sha": "a" * 40, "user": user},
            "base": {"label": f"{owner}:main", "ref": "main", "sha": "b" * 40, "user": user},
        },
        "repository": {
            "id": 42,
            "name": repo.split("/")[1],
            "full_name": repo,
            "private": False,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "html_url": f"{WEB}/{repo}",
        },
        "sender": user,
    }


class FakeGitHub(ThreadedServer):
    name = "fake-github"

    def __init__(self, token: str = "ghp-test", repos: Sequence[str] = ("acme/shop",), *, login: str = "vigil-bot"):
        super().__init__()
        self.token = token
        self.login = login
        self.repos = list(repos)
        self.issues: dict[str, dict[int, Json]] = {repo: {} for repo in repos}
        self.commits: dict[str, list[Json]] = {repo: [] for repo in repos}
        self._ids = itertools.count(5001)
        resources: list[tuple[str, Handler, Sequence[str]]] = [
            ("/user", self._user, ["GET"]),
            ("/repos/{owner}/{name}", self._repo, ["GET"]),
            ("/repos/{owner}/{name}/issues", self._issues, ["GET", "POST"]),
            ("/repos/{owner}/{name}/issues/{number:int}", self._issue, ["GET"]),
            ("/repos/{owner}/{name}/issues/{number:int}/comments", self._comments, ["GET", "POST"]),
            ("/repos/{owner}/{name}/compare/{basehead:path}", self._compare, ["GET"]),
            ("/repos/{owner}/{name}/commits/{sha}", self._commit, ["GET"]),
        ]
        self._app = Starlette(
            routes=[self._route(path, self._authenticated(handler), methods) for path, handler, methods in resources]
        )

    sign = staticmethod(sign)
    """`FakeGitHub.sign(body, secret)`: the module's `sign`."""

    def pull_request_event(
        self, repo: str, number: int, title: str, body: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """The module's `pull_request_event`, for a repository of this fake."""
        return pull_request_event(repo, number, title, body, **options)

    # -- test controls and views --------------------------------------------------------------------------------

    def add_commits(self, repo: str, commits: Sequence[tuple[str, str, str | None]]) -> None:
        """Append commits (sha, message, author login or None) to the repository's history, oldest first."""
        with self._lock:
            history = self.commits[repo]
            for sha, message, author in commits:
                parent = history[-1]["sha"] if history else None
                history.append({"sha": sha, "message": message, "author": author, "parent": parent})

    def issues_of(self, repo: str) -> list[Json]:
        with self._lock:
            return [copy.deepcopy(issue) for issue in self.issues[repo].values()]

    def issue(self, repo: str, number: int) -> Json:
        with self._lock:
            return copy.deepcopy(self.issues[repo][number])

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _error_body(self, status: int) -> Json:
        return {"message": f"injected failure {status}", "documentation_url": "https://docs.github.com/rest"}

    def _authenticated(self, handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            if request.headers.get("authorization") not in (f"token {self.token}", f"Bearer {self.token}"):
                return JSONResponse(
                    {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                    status_code=401,
                )
            try:
                return await handler(request)
            except GitHubError as exc:
                body: Json = {"message": exc.message, "documentation_url": "https://docs.github.com/rest"}
                if exc.errors is not None:
                    body["errors"] = exc.errors
                return JSONResponse(body, status_code=exc.status)

        return checked

    def _repo_name(self, request: Request) -> str:
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        if repo not in self.issues:
            raise GitHubError(404, "Not Found")
        return repo

    def _user_json(self, login: str | None) -> Json | None:
        if login is None:
            return None
        return {"login": login, "id": abs(hash(login)) % 100000, "type": "User", "html_url": f"{WEB}/{login}"}

    def _issue_json(self, repo: str, issue: Json) -> Json:
        number = issue["number"]
        return {
            "id": issue["id"],
            "number": number,
            "url": f"{self.url}/repos/{repo}/issues/{number}",
            "html_url": f"{WEB}/{repo}/issues/{number}",
            "comments_url": f"{self.url}/repos/{repo}/issues/{number}/comments",
            "title": issue["title"],
            "body": issue["body"],
            "state": issue["state"],
            "labels": [{"name": label, "color": "ededed"} for label in issue["labels"]],
            "user": self._user_json(self.login),
            "assignee": None,
            "assignees": [],
            "comments": len(issue["comments"]),
            "created_at": issue["created_at"],
            "updated_at": issue["created_at"],
            "closed_at": None,
            "locked": False,
        }

    def _commit_json(self, repo: str, commit: Json) -> Json:
        author = commit["author"]
        person = {"name": author or "unknown", "email": f"{author or 'unknown'}@example.com", "date": _now()}
        return {
            "sha": commit["sha"],
            "url": f"{self.url}/repos/{repo}/commits/{commit['sha']}",
            "html_url": f"{WEB}/{repo}/commit/{commit['sha']}",
            "commit": {"message": commit["message"], "author": person, "committer": person},
            "author": self._user_json(author),
            "committer": self._user_json(author),
            "parents": [{"sha": commit["parent"]}] if commit["parent"] else [],
        }

    async def _json_body(self, request: Request) -> Json:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise GitHubError(400, "Problems parsing JSON") from None
        if not isinstance(body, dict):
            raise GitHubError(400, "Problems parsing JSON")
        return body

    # -- resources ----------------------------------------------------------------------------------------------

    async def _user(self, request: Request) -> Response:
        return JSONResponse({**(self._user_json(self.login) or {}), "name": "Vigil", "type": "Bot"})

    async def _repo(self, request: Request) -> Response:
        repo = self._repo_name(request)
        owner, name = repo.split("/")
        return JSONResponse(
            {
                "id": 42,
                "name": name,
                "full_name": repo,
                "owner": {"login": owner, "id": 1, "type": "Organization"},
                "url": f"{self.url}/repos/{repo}",
                "html_url": f"{WEB}/{repo}",
                "private": False,
                "default_branch": "main",
            }
        )

    async def _issues(self, request: Request) -> Response:
        repo = self._repo_name(request)
        if request.method == "POST":
            body = await self._json_body(request)
            title = body.get("title")
            if not isinstance(title, str) or not title.strip():
                raise GitHubError(
                    422, "Validation Failed", [{"resource": "Issue", "code": "missing_field", "field": "title"}]
                )
            labels = body.get("labels", [])
            if not isinstance(labels, list) or any(not isinstance(label, str) for label in labels):
                raise GitHubError(
                    422, "Validation Failed", [{"resource": "Issue", "code": "invalid", "field": "labels"}]
                )
            with self._lock:
                number = len(self.issues[repo]) + 1
                issue = {
                    "id": next(self._ids),
                    "number": number,
                    "title": title,
                    "body": body.get("body"),
                    "labels": list(dict.fromkeys(labels)),
                    "state": "open",
                    "comments": [],
                    "created_at": _now(),
                }
                self.issues[repo][number] = issue
                return JSONResponse(self._issue_json(repo, issue), status_code=201)
        state = request.query_params.get("state", "open")
        wanted = [label for label in request.query_params.get("labels", "").split(",") if label]
        per_page = int(request.query_params.get("per_page", 30))
        page = int(request.query_params.get("page", 1))
        with self._lock:
            found = [
                issue
                for issue in self.issues[repo].values()
                if (state == "all" or issue["state"] == state) and all(label in issue["labels"] for label in wanted)
            ]
            if request.query_params.get("direction", "desc") == "desc":
                found.reverse()
            chosen = found[(page - 1) * per_page : page * per_page]
            return JSONResponse([self._issue_json(repo, issue) for issue in chosen])

    def _issue_or_404(self, repo: str, number: int) -> Json:
        issue = self.issues[repo].get(number)
        if issue is None:
            raise GitHubError(404, "Not Found")
        return issue

    async def _issue(self, request: Request) -> Response:
        repo = self._repo_name(request)
        with self._lock:
            return JSONResponse(self._issue_json(repo, self._issue_or_404(repo, request.path_params["number"])))

    async def _comments(self, request: Request) -> Response:
        repo = self._repo_name(request)
        number = request.path_params["number"]
        if request.method == "POST":
            body = await self._json_body(request)
            text = body.get("body")
            if not isinstance(text, str) or not text.strip():
                raise GitHubError(
                    422, "Validation Failed", [{"resource": "IssueComment", "code": "missing_field", "field": "body"}]
                )
            with self._lock:
                issue = self._issue_or_404(repo, number)
                comment_id = next(self._ids)
                comment = {
                    "id": comment_id,
                    "body": text,
                    "user": self._user_json(self.login),
                    "url": f"{self.url}/repos/{repo}/issues/comments/{comment_id}",
                    "html_url": f"{WEB}/{repo}/issues/{number}#issuecomment-{comment_id}",
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                issue["comments"].append(comment)
            return JSONResponse(comment, status_code=201)
        per_page = int(request.query_params.get("per_page", 30))
        page = int(request.query_params.get("page", 1))
        with self._lock:
            comments = list(self._issue_or_404(repo, number)["comments"])
        return JSONResponse(comments[(page - 1) * per_page : page * per_page])

    async def _compare(self, request: Request) -> Response:
        repo = self._repo_name(request)
        base, dots, head = str(request.path_params["basehead"]).partition("...")
        if not dots:
            raise GitHubError(404, "Not Found")
        with self._lock:
            shas = [commit["sha"] for commit in self.commits[repo]]
            if base not in shas or head not in shas:
                raise GitHubError(404, "No common ancestor between the two commits, or an unknown commit.")
            start, end = shas.index(base), shas.index(head)
            between = self.commits[repo][start + 1 : end + 1] if end > start else []
            listed = [self._commit_json(repo, commit) for commit in between]
            behind = max(start - end, 0)
        return JSONResponse(
            {
                "url": f"{self.url}/repos/{repo}/compare/{base}...{head}",
                "html_url": f"{WEB}/{repo}/compare/{base}...{head}",
                "status": "ahead" if listed else ("behind" if behind else "identical"),
                "ahead_by": len(listed),
                "behind_by": behind,
                "total_commits": len(listed),
                "commits": listed,
                "files": [],
            }
        )

    async def _commit(self, request: Request) -> Response:
        repo = self._repo_name(request)
        sha = request.path_params["sha"]
        with self._lock:
            commit = next((c for c in self.commits[repo] if c["sha"] == sha), None)
            if commit is None:
                raise GitHubError(422, f"No commit found for SHA: {sha}")
            return JSONResponse(self._commit_json(repo, commit))

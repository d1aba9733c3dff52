"""A fake Jira: the REST API v2 resources the `jira` library calls for Vigil, over real HTTP, so the production
tracker runs unmodified against it (`JIRA(server=fake.url, basic_auth=(fake.user, fake.token))`).

Served under `/rest/api/2/...` and `/rest/api/latest/...` (the library uses both): serverInfo, myself,
project/{key}, field, search (Server) and search/jql (Cloud) with a minimal JQL (`project = X AND labels = "Y"`,
an optional `ORDER BY`), issue create (project key, summary and issue type name required, else 400 with Jira's
`errors` shape) and get, user/search, issue/{key}/assignee, issue/{key}/comment (orderBy, maxResults) and
issue/{key}/transitions. Every request needs HTTP Basic auth with the fake's user and token (401 otherwise).
`deployment="Cloud"` makes serverInfo say Cloud, users carry account ids and assignment takes `accountId`.

What Vigil did is readable at any time: `issues` (key -> fields, labels, status, assignee, comments,
transitions taken) and `requests` ("METHOD /path" in order). `fail()` makes the next calls answer an error;
`stop()` then `start()` serves the same port again (Jira down, then back).

`ThreadedServer`, the uvicorn-in-a-thread part, is shared with the fake GitHub.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import ServedApp

Json = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class _Failure:
    prefix: str
    status: int
    headers: dict[str, str]
    body: Json | None


class ThreadedServer(ServedApp):
    """A Starlette app served by uvicorn in its own thread on 127.0.0.1, with injected failures and a request log.

    Subclasses build `self._app`; every request passes `_gate` first: a pending `fail()` matching "METHOD /path"
    answers instead of the route."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self._lock = threading.RLock()
        self._failures: list[_Failure] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(
        self,
        method_path_prefix: str,
        status: int,
        retry_after: int | str | None = None,
        times: int = 1,
        *,
        headers: Mapping[str, str] | None = None,
        body: Json | None = None,
    ) -> None:
        """The next `times` requests whose "METHOD /path" starts with `method_path_prefix` (e.g. "POST
        /rest/api/2/issue"; "/rest/api/2/issue" matches the path whatever the method; "" matches any request)
        answer HTTP `status` and change nothing: with Retry-After when given, the other `headers`, and `body`
        (default: the service's error shape)."""
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = str(retry_after)
        with self._lock:
            self._failures.extend([_Failure(method_path_prefix, status, all_headers, body)] * times)

    def _error_body(self, status: int) -> Json:
        return {"message": f"injected failure {status}"}

    def _take_failure(self, line: str) -> _Failure | None:
        path = line.partition(" ")[2]
        with self._lock:
            self.requests.append(line)
            for index, failure in enumerate(self._failures):
                if (path if failure.prefix.startswith("/") else line).startswith(failure.prefix):
                    del self._failures[index]
                    return failure
        return None

    def _route(self, path: str, handler: Handler, methods: Sequence[str]) -> Route:
        async def gated(request: Request) -> Response:
            failure = self._take_failure(f"{request.method} {request.url.path}")
            if failure is not None:
                body = failure.body if failure.body is not None else self._error_body(failure.status)
                return JSONResponse(body, status_code=failure.status, headers=failure.headers)
            return await handler(request)

        return Route(path, gated, methods=list(methods))


class JiraError(Exception):
    def __init__(self, status: int, messages: Sequence[str] = (), errors: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.messages = list(messages)
        self.errors = errors or {}


_JQL = re.compile(
    r'^\s*project\s*=\s*"?(?P<project>[A-Za-z0-9_]+)"?\s+AND\s+labels\s*=\s*"(?P<label>[^"]+)"'
    r"(?:\s+ORDER\s+BY\s+(?P<field>\w+)(?:\s+(?P<direction>ASC|DESC))?)?\s*$",
    re.IGNORECASE,
)

FIELDS = ("summary", "description", "labels", "assignee", "status", "issuetype", "project", "created")


class FakeJira(ThreadedServer):
    name = "fake-jira"

    def __init__(
        self,
        user: str = "vigil@example.com",
        token: str = "jira-test-token",
        project: str = "OPS",
        transitions: Sequence[str] = ("In Progress", "In Review", "Done"),
        *,
        users: Sequence[str] = ("alice", "bob@example.com"),
        deployment: str = "Server",
        issue_types: Sequence[str] = ("Bug", "Task"),
    ) -> None:
        """`transitions`: the workflow's transition names; transition N (1-based) has id `N*10+1` and leads to the
        status of the same name; an issue is offered every transition but the one to its current status.
        `users`: who can be assigned (besides `user`): a name, or an email."""
        super().__init__()
        self.user = user
        self.token = token
        self.project = project
        self.deployment = deployment
        self.issue_types = list(issue_types)
        self.transition_names = list(transitions)
        self.users = [user, *users]
        self.issues: dict[str, Json] = {}
        self._numbers = itertools.count(1)
        self._comment_ids = itertools.count(10001)
        resources: list[tuple[str, Handler, Sequence[str]]] = [
            ("/serverInfo", self._server_info, ["GET"]),
            ("/myself", self._myself, ["GET"]),
            ("/project/{key}", self._project, ["GET"]),
            ("/field", self._fields, ["GET"]),
            ("/search", self._search, ["GET", "POST"]),
            ("/search/jql", self._search_jql, ["GET", "POST"]),
            ("/user/search", self._user_search, ["GET"]),
            ("/issue", self._create_issue, ["POST"]),
            ("/issue/{key}", self._get_issue, ["GET"]),
            ("/issue/{key}/assignee", self._assign, ["PUT"]),
            ("/issue/{key}/comment", self._comments, ["GET", "POST"]),
            ("/issue/{key}/transitions", self._transitions, ["GET", "POST"]),
        ]
        routes = [
            self._route(f"/rest/api/{version}{path}", self._authenticated(handler), methods)
            for version in ("2", "latest")
            for path, handler, methods in resources
        ]
        self._app = Starlette(routes=routes)

    # -- views --------------------------------------------------------------------------------------------------

    def issue(self, key: str) -> Json:
        with self._lock:
            return copy.deepcopy(self.issues[key])

    def issues_labelled(self, label: str) -> list[Json]:
        with self._lock:
            return [copy.deepcopy(issue) for issue in self.issues.values() if label in issue["labels"]]

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _error_body(self, status: int) -> Json:
        return {"errorMessages": [f"injected failure {status}"], "errors": {}}

    def _authenticated(self, handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            expected = "Basic " + base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return Response(
                    "<html><body>Basic authentication with passwords is deprecated or failed</body></html>",
                    status_code=401,
                    media_type="text/html",
                    headers={"WWW-Authenticate": 'Basic realm="protected-area"'},
                )
            try:
                return await handler(request)
            except JiraError as exc:
                return JSONResponse({"errorMessages": exc.messages, "errors": exc.errors}, status_code=exc.status)

        return checked

    def _self(self, path: str) -> str:
        return f"{self.url}/rest/api/2/{path}"

    def _user_json(self, name: str) -> Json:
        short = name.split("@")[0]
        email = name if "@" in name else f"{name}@example.com"
        return {
            "self": self._self(f"user?username={short}"),
            "name": name,
            "key": short,
            "accountId": f"acc-{short}",
            "emailAddress": email,
            "displayName": short.title(),
            "active": True,
        }

    def _issue_or_404(self, key: str) -> Json:
        issue = self.issues.get(key)
        if issue is None:
            raise JiraError(404, ["Issue does not exist or you do not have permission to see it."])
        return issue

    def _issue_json(self, issue: Json) -> Json:
        assignee = issue["assignee"]
        return {
            "id": issue["id"],
            "key": issue["key"],
            "self": self._self(f"issue/{issue['id']}"),
            "fields": {
                "summary": issue["summary"],
                "description": issue["description"],
                "labels": list(issue["labels"]),
                "issuetype": {"name": issue["issuetype"]},
                "project": {"key": self.project},
                "status": {"name": issue["status"]},
                "assignee": None if assignee is None else self._user_json(assignee),
                "created": issue["created"],
            },
        }

    async def _json_body(self, request: Request) -> Json:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise JiraError(400, ["Unexpected character in the body: not JSON"]) from None
        if not isinstance(body, dict):
            raise JiraError(400, ["Expected a JSON object"])
        return body

    # -- resources ----------------------------------------------------------------------------------------------

    async def _server_info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "baseUrl": self.url,
                "version": "9.12.0",
                "versionNumbers": [9, 12, 0],
                "deploymentType": self.deployment,
                "buildNumber": 9120000,
                "serverTitle": "Fake Jira",
            }
        )

    async def _myself(self, request: Request) -> Response:
        return JSONResponse(self._user_json(self.user))

    async def _project(self, request: Request) -> Response:
        key = request.path_params["key"]
        if key != self.project:
            raise JiraError(404, [f"No project could be found with key '{key}'."])
        return JSONResponse({"id": "10000", "key": self.project, "name": f"{self.project} project", "self": ""})

    async def _fields(self, request: Request) -> Response:
        return JSONResponse(
            [{"id": name, "key": name, "name": name.title(), "custom": False, "clauseNames": [name]} for name in FIELDS]
        )

    async def _matching(self, request: Request) -> tuple[list[Json], int]:
        if request.method == "POST":
            params = await self._json_body(request)
        else:
            params = dict(request.query_params)
        jql = str(params.get("jql", ""))
        match = _JQL.match(jql)
        if match is None:
            raise JiraError(400, [f"The fake Jira understands only 'project = X AND labels = \"Y\"', not {jql!r}"])
        if match["project"].upper() != self.project:
            raise JiraError(400, [f"The value '{match['project']}' does not exist for the field 'project'."])
        max_results = int(params.get("maxResults", 50))
        with self._lock:
            found = [issue for issue in self.issues.values() if match["label"] in issue["labels"]]
            found.sort(key=lambda issue: int(issue["id"]), reverse=(match["direction"] or "").upper() == "DESC")
            return [self._issue_json(issue) for issue in found[:max_results]], len(found)

    async def _search(self, request: Request) -> Response:
        issues, total = await self._matching(request)
        return JSONResponse({"startAt": 0, "maxResults": 50, "total": total, "issues": issues})

    async def _search_jql(self, request: Request) -> Response:
        if self.deployment != "Cloud":
            raise JiraError(404, ["search/jql is a Jira Cloud resource"])
        issues, _ = await self._matching(request)
        return JSONResponse({"issues": issues, "isLast": True})

    async def _user_search(self, request: Request) -> Response:
        term = request.query_params.get("query" if self.deployment == "Cloud" else "username", "")
        if not term:
            raise JiraError(400, ["The username query parameter was not provided"])
        found = [
            self._user_json(name)
            for name in self.users
            if term.lower() in (name.lower(), self._user_json(name)["emailAddress"].lower())
        ]
        return JSONResponse(found)

    async def _create_issue(self, request: Request) -> Response:
        body = await self._json_body(request)
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise JiraError(400, ["Field 'fields' is required."])
        errors: dict[str, str] = {}
        project = fields.get("project")
        if not isinstance(project, dict) or project.get("key") != self.project:
            errors["project"] = "Specify a valid project ID or key"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255 or "\n" in summary:
            errors["summary"] = "Summary must be less than 255 characters, on one line."
        issuetype = fields.get("issuetype")
        if not isinstance(issuetype, dict) or issuetype.get("name") not in self.issue_types:
            errors["issuetype"] = "Specify a valid issue type"
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or any(not isinstance(x, str) or not x or " " in x for x in labels):
            errors["labels"] = "Labels must be strings without spaces"
        description = fields.get("description")
        if description is not None and not isinstance(description, str):
            errors["description"] = "Operation value must be a string"
        assignee = self._assignable(fields.get("assignee"))
        if "assignee" in fields and assignee is None:
            errors["assignee"] = f"User {fields['assignee']!r} cannot be assigned issues."
        if errors:
            raise JiraError(400, [], errors)
        with self._lock:
            number = next(self._numbers)
            key = f"{self.project}-{number}"
            self.issues[key] = {
                "id": str(10000 + number),
                "key": key,
                "summary": summary,
                "description": description,
                "labels": list(labels),
                "issuetype": issuetype["name"] if isinstance(issuetype, dict) else None,
                "status": "Open",
                "assignee": assignee,
                "comments": [],
                "transitions": [],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()),
            }
            issue_id = self.issues[key]["id"]
        return JSONResponse({"id": issue_id, "key": key, "self": self._self(f"issue/{issue_id}")}, status_code=201)

    async def _get_issue(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse(self._issue_json(self._issue_or_404(request.path_params["key"])))

    def _assignable(self, value: object) -> str | None:
        """The user an `assignee` value names (`{"name": ...}` on Server, `{"accountId": ...}` on Cloud)."""
        field = "accountId" if self.deployment == "Cloud" else "name"
        wanted = value.get(field) if isinstance(value, dict) else None
        known = {str(self._user_json(name)[field]): name for name in self.users}
        return known.get(str(wanted)) if wanted is not None else None

    async def _assign(self, request: Request) -> Response:
        body = await self._json_body(request)
        user = self._assignable(body)
        with self._lock:
            issue = self._issue_or_404(request.path_params["key"])
            if user is None:
                raise JiraError(400, [], {"assignee": f"User {body!r} cannot be assigned issues."})
            issue["assignee"] = user
        return Response(status_code=204)

    async def _comments(self, request: Request) -> Response:
        key = request.path_params["key"]
        if request.method == "POST":
            body = await self._json_body(request)
            text = body.get("body")
            if not isinstance(text, str) or not text.strip():
                raise JiraError(400, [], {"comment": "Comment body can not be empty!"})
            with self._lock:
                issue = self._issue_or_404(key)
                comment = {
                    "id": str(next(self._comment_ids)),
                    "body": text,
                    "author": self._user_json(self.user),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()),
                }
                issue["comments"].append(comment)
            return JSONResponse(
                {**comment, "self": self._self(f"issue/{key}/comment/{comment['id']}")}, status_code=201
            )
        with self._lock:
            comments = [dict(c) for c in self._issue_or_404(key)["comments"]]
        if request.query_params.get("orderBy", "created").lstrip("+") == "-created":
            comments.reverse()
        start = int(request.query_params.get("startAt", 0))
        limit = int(request.query_params.get("maxResults", 5000))
        page = comments[start : start + limit]
        return JSONResponse({"startAt": start, "maxResults": limit, "total": len(comments), "comments": page})

    def _offered(self, issue: Json) -> list[Json]:
        return [
            {"id": str(index * 10 + 1), "name": name, "to": {"name": name}}
            for index, name in enumerate(self.transition_names, start=1)
            if name != issue["status"]
        ]

    async def _transitions(self, request: Request) -> Response:
        key = request.path_params["key"]
        if request.method == "GET":
            with self._lock:
                return JSONResponse({"transitions": self._offered(self._issue_or_404(key))})
        body = await self._json_body(request)
        transition = body.get("transition")
        wanted = str(transition.get("id")) if isinstance(transition, dict) else None
        with self._lock:
            issue = self._issue_or_404(key)
            chosen = next((t for t in self._offered(issue) if t["id"] == wanted), None)
            if chosen is None:
                raise JiraError(400, [f"Transition id '{wanted}' is not valid for this issue."], {})
            issue["status"] = chosen["to"]["name"]
            issue["transitions"].append(chosen["name"])
        return Response(status_code=204)

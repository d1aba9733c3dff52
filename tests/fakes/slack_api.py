"""A fake Slack: the Web API methods Vigil uses, served over real HTTP so the real `slack_sdk` clients (with
`base_url=fake.url`) talk to it, plus the signed requests Slack itself sends to Vigil's /slack/events.

It checks what Slack checks (the bot token, the channel, required arguments, message metadata, Block Kit
limits) and answers the way Slack does: HTTP 200 with `{"ok": false, "error": "<code>"}` for a refused call,
429 with Retry-After when rate-limiting, and an HTML error page for a 5xx. Bodies may be JSON or
form-encoded (in a form, `blocks`, `attachments`, `metadata` and `view` are JSON strings), GET arguments come
in the query string. Messages get unique, increasing timestamps taken from the clock ("1700000000.000100"), so
`oldest`/`latest` windows computed from real times work.

The server runs in its own thread with its own event loop, so sync and async tests use it alike; what it
received is readable at any time (`messages`, `updates`, `calls`, ...). `stop()` then `start()` again serves
the same port with the same workspace: Slack down, then back.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import ServedApp

BOT_ID = "B0VIGILBOT"
APP_ID = "A0VIGIL"
TEAM_DOMAIN = "vigil-test"
VERIFICATION_TOKEN = "fake-verification-token"
JSON_FIELDS = ("blocks", "attachments", "metadata", "view")
"""Arguments a form body carries as JSON strings."""
TICK = Decimal("0.000001")

Json = dict[str, Any]


class SlackError(Exception):
    """A refused call: `{"ok": false, "error": code}`, HTTP 200 like Slack."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


class FakeSlack(ServedApp):
    name = "fake-slack"

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-vigil-test",
        signing_secret: str = "test-signing-secret",
        channels: Sequence[str] = ("C0VIGIL",),
        team_id: str = "T0VIGIL",
        bot_user_id: str = "U0VIGILBOT",
        channel_names: Mapping[str, str] | None = None,
    ) -> None:
        """`channel_names`: channel id -> name (without `#`); a channel not named there is called by its id in
        lower case. Methods that take a name (chat.postMessage) accept `#name` or `name` too."""
        super().__init__()
        self.bot_token = bot_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        names = dict(channel_names or {})
        self.channel_names = {channel: names.get(channel, channel.lower()) for channel in channels}
        self.url = f"http://127.0.0.1:{self.port}/api/"

        self.messages: list[Json] = []
        self.updates: list[Json] = []
        """What chat.postMessage / chat.update received: the call's arguments, `channel`, (`ts`,) and `received_at`,
        the time.time() it was stored at."""
        self.ephemerals: list[Json] = []
        self.views: list[Json] = []
        self.responses: list[Json] = []
        """POSTs to the `response_url` of interactions and commands (`key`: which one, then the JSON body)."""
        self.calls: list[str] = []
        self.held = threading.Event()

        self._lock = threading.Lock()
        self._store: dict[str, list[Json]] = {channel: [] for channel in channels}
        self._failures: dict[str, list[tuple[int, int | None]]] = {}
        self._holds: dict[str, list[threading.Event]] = {}
        self._gates: list[threading.Event] = []
        self._last_ts = Decimal(0)
        self._ids = itertools.count(1)
        self._methods: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list_channels,
            "views.open": self._open_view,
        }
        self._app = Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/response/{key}", self._response_url, methods=["POST"]),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving (connections are refused from now on); a held answer is released first."""
        if self._server is None or self._thread is None:
            return
        with self._lock:
            for gate in self._gates:
                gate.set()
        super().stop()

    # -- test controls and views -------------------------------------------------------------------------------

    def fail(self, method: str, *, status: int = 500, retry_after: int | None = None, times: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP `status` (a 429 with Retry-After when given) and store
        nothing. `method` is a Web API method name, or "response_url"."""
        with self._lock:
            self._failures.setdefault(method, []).extend([(status, retry_after)] * times)

    def hold(self, method: str) -> threading.Event:
        """The next call of `method` is performed (stored) but its answer waits until the returned Event is set;
        `held` is set once that call is stored and waiting."""
        gate = threading.Event()
        with self._lock:
            self.held.clear()
            self._holds.setdefault(method, []).append(gate)
            self._gates.append(gate)
        return gate

    def top_level(self, channel: str | None = None) -> list[Json]:
        """The current top-level messages (updates applied), oldest first, of one channel or all."""
        with self._lock:
            chosen = [channel] if channel else list(self._store)
            return [copy.deepcopy(m) for c in chosen for m in self._store.get(c, []) if _is_top_level(m)]

    def thread(self, ts: str) -> list[Json]:
        """The replies in the thread of message `ts`, oldest first (without the message itself)."""
        with self._lock:
            return [
                copy.deepcopy(m)
                for messages in self._store.values()
                for m in messages
                if m.get("thread_ts") == ts and m["ts"] != ts
            ]

    # -- what Slack sends to Vigil -----------------------------------------------------------------------------

    def sign(self, body: str, *, timestamp: int | None = None) -> dict[str, str]:
        """The headers Slack signs a request to the app with (v0: HMAC-SHA256 of "v0:{timestamp}:{body}")."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(self.signing_secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}

    def interaction_body(
        self,
        action_id: str,
        value: str,
        *,
        user_id: str,
        channel: str | None = None,
        message_ts: str = "1.000",
        trigger_id: str | None = None,
    ) -> str:
        """A `block_actions` interaction (a button click), form-encoded as Slack posts it: `payload=<json>`. The
        message, its block id and button text come from the stored message `message_ts` when there is one."""
        channel = channel or self._first_channel()
        with self._lock:
            stored = self._find(channel, message_ts)
            message = copy.deepcopy(stored) if stored else None
        block_id, button_text = "actions", {"type": "plain_text", "text": action_id}
        for block in (message or {}).get("blocks", []):
            for element in block.get("elements", []):
                if element.get("action_id") == action_id:
                    block_id, button_text = block.get("block_id", block_id), element.get("text", button_text)
        payload: Json = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": trigger_id or self._trigger_id(),
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self.channel_names.get(channel, channel.lower())},
            "message": message
            or {"type": "message", "ts": message_ts, "text": "", "user": self.bot_user_id, "bot_id": BOT_ID},
            "state": {"values": {}},
            "response_url": self._new_response_url(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": button_text,
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return urlencode({"payload": json.dumps(payload)})

    def view_submission_body(
        self, callback_id: str, private_metadata: str, values: dict[str, dict[str, str]], *, user_id: str
    ) -> str:
        """A `view_submission` (a modal's Submit), form-encoded; `values`: block_id -> action_id -> text typed.
        The view's title and blocks are those of the last `views.open` with this callback_id, if any."""
        with self._lock:
            opened: Json = next(
                (v["view"] for v in reversed(self.views) if v["view"].get("callback_id") == callback_id), {}
            )
        view = {
            "id": f"V{next(self._ids):010d}",
            "team_id": self.team_id,
            "type": "modal",
            "title": opened.get("title", {"type": "plain_text", "text": "Vigil"}),
            "blocks": copy.deepcopy(opened.get("blocks", [])),
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {
                "values": {
                    block_id: {
                        action_id: {"type": "plain_text_input", "value": text} for action_id, text in fields.items()
                    }
                    for block_id, fields in values.items()
                }
            },
            "hash": uuid.uuid4().hex[:16],
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        payload: Json = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self._trigger_id(),
            "view": view,
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        return urlencode({"payload": json.dumps(payload)})

    def event_body(self, event: dict[str, Any]) -> str:
        """An Events API `event_callback` envelope around `event`, as JSON."""
        return json.dumps(
            {
                "token": VERIFICATION_TOKEN,
                "team_id": self.team_id,
                "api_app_id": APP_ID,
                "event": event,
                "type": "event_callback",
                "event_id": f"Ev{next(self._ids):010d}",
                "event_time": int(time.time()),
                "authorizations": [
                    {
                        "enterprise_id": None,
                        "team_id": self.team_id,
                        "user_id": self.bot_user_id,
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ],
                "is_ext_shared_channel": False,
            }
        )

    def command_body(self, command: str, text: str, *, user_id: str, channel: str | None = None) -> str:
        """A slash command invocation, form-encoded."""
        channel = channel or self._first_channel()
        return urlencode(
            {
                "token": VERIFICATION_TOKEN,
                "team_id": self.team_id,
                "team_domain": TEAM_DOMAIN,
                "channel_id": channel,
                "channel_name": self.channel_names.get(channel, channel.lower()),
                "user_id": user_id,
                "user_name": f"user-{user_id.lower()}",
                "command": command,
                "text": text,
                "api_app_id": APP_ID,
                "is_enterprise_install": "false",
                "response_url": self._new_response_url(),
                "trigger_id": self._trigger_id(),
            }
        )

    # -- HTTP --------------------------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        with self._lock:
            self.calls.append(method)
            failure = self._take(self._failures, method)
        if failure is not None:
            return _failure(*failure)
        try:
            args = await _arguments(request)
            self._authenticate(request, args)
            handler = self._methods.get(method)
            if handler is None:
                return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)
            with self._lock:
                body = handler(args)
        except SlackError as exc:
            body = {"ok": False, "error": exc.code}
            if exc.detail:
                body["response_metadata"] = {"messages": [f"[ERROR] {exc.detail}"]}
        await self._maybe_hold(method)
        return JSONResponse(body)

    async def _response_url(self, request: Request) -> Response:
        with self._lock:
            self.calls.append("response_url")
            failure = self._take(self._failures, "response_url")
        if failure is not None:
            return _failure(*failure)
        body = json.loads(await request.body() or b"{}")
        with self._lock:
            self.responses.append({"key": request.path_params["key"], **body})
        await self._maybe_hold("response_url")
        return JSONResponse({"ok": True})

    async def _maybe_hold(self, method: str) -> None:
        with self._lock:
            gate = self._take(self._holds, method)
        if gate is None:
            return
        self.held.set()
        # Polled: the test sets a threading.Event, and a thread blocked on it would keep uvicorn from stopping.
        while not gate.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    @staticmethod
    def _take(queues: dict[str, list[Any]], method: str) -> Any:
        queue = queues.get(method)
        return queue.pop(0) if queue else None

    def _authenticate(self, request: Request, args: Json) -> None:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else args.pop("token", None)
        args.pop("token", None)
        if not token:
            raise SlackError("not_authed")
        if not hmac.compare_digest(str(token), self.bot_token):
            raise SlackError("invalid_auth")

    # -- Web API methods (called under the lock) ---------------------------------------------------------------

    def _auth_test(self, args: Json) -> Json:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Vigil Test",
            "user": "vigil",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: Json) -> Json:
        channel = self._channel(args, by_name=True)
        _require_content(args)
        metadata = _metadata(args)
        root: Json | None = None
        if args.get("thread_ts"):
            root = self._find(channel, str(args["thread_ts"]))
            if root is None:
                raise SlackError("thread_not_found")
            root = self._find(channel, str(root.get("thread_ts", root["ts"]))) or root
        ts = self._next_ts()
        message: Json = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "text": args.get("text") or "",
            "ts": ts,
        }
        if args.get("blocks"):
            message["blocks"] = args["blocks"]
        if metadata is not None:
            message["metadata"] = metadata
        if root is not None:
            message["thread_ts"] = root["ts"]
            message["parent_user_id"] = root.get("user")
            root["thread_ts"] = root["ts"]
            root["reply_count"] = root.get("reply_count", 0) + 1
            root["latest_reply"] = ts
        self._store[channel].append(message)
        self.messages.append({**args, "channel": channel, "ts": ts, "received_at": time.time()})
        return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _update(self, args: Json) -> Json:
        channel = self._channel(args)
        message = self._find(channel, str(args.get("ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        _require_content(args)
        metadata = _metadata(args)
        if "text" in args:
            message["text"] = args["text"] or ""
        if "blocks" in args:
            message["blocks"] = args["blocks"]
        if metadata is not None:
            message["metadata"] = metadata
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self.updates.append({**args, "channel": channel, "received_at": time.time()})
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _post_ephemeral(self, args: Json) -> Json:
        channel = self._channel(args, by_name=True)
        if not args.get("user"):
            raise SlackError("invalid_arguments", "missing required field: user")
        _require_content(args)
        message_ts = self._next_ts()
        self.ephemerals.append({**args, "channel": channel, "message_ts": message_ts})
        return {"ok": True, "message_ts": message_ts}

    def _get_permalink(self, args: Json) -> Json:
        channel = self._channel(args)
        message = self._find(channel, str(args.get("message_ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{message['ts'].replace('.', '')}"
        if not _is_top_level(message):
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _history(self, args: Json) -> Json:
        """Top-level messages, newest first, within (oldest, latest) (`inclusive`: the bounds too)."""
        channel = self._channel(args)
        within = _window(args)
        found = [m for m in reversed(self._store[channel]) if _is_top_level(m) and within(m["ts"])]
        return self._page(found, args, key="messages", default_limit=100, metadata=_flag(args, "include_all_metadata"))

    def _replies(self, args: Json) -> Json:
        """The thread of message `ts`: the message first, then its replies within (oldest, latest), oldest first."""
        channel = self._channel(args)
        message = self._find(channel, str(args.get("ts") or ""))
        if message is None:
            raise SlackError("thread_not_found")
        root_ts = str(message.get("thread_ts", message["ts"]))
        root = self._find(channel, root_ts) or message
        within = _window(args)
        replies = [m for m in self._store[channel] if m.get("thread_ts") == root_ts and m is not root]
        found = [root, *(m for m in replies if within(m["ts"]))]
        return self._page(found, args, key="messages", default_limit=1000, metadata=_flag(args, "include_all_metadata"))

    def _list_channels(self, args: Json) -> Json:
        channels = [
            {"id": cid, "name": name, "is_channel": True, "is_private": False, "is_archived": False, "is_member": True}
            for cid, name in self.channel_names.items()
        ]
        return self._page(channels, args, key="channels", default_limit=100, metadata=True)

    def _open_view(self, args: Json) -> Json:
        if not args.get("trigger_id"):
            raise SlackError("invalid_arguments", "missing required field: trigger_id")
        view = args.get("view")
        if not isinstance(view, dict) or view.get("type") != "modal" or not isinstance(view.get("blocks"), list):
            raise SlackError("invalid_arguments", "view must be a modal with blocks")
        if not isinstance(view.get("title"), dict):
            raise SlackError("invalid_arguments", "missing required field: title")
        _check_blocks(view["blocks"], limit=100)
        self.views.append(dict(args))
        opened = {
            "id": f"V{next(self._ids):010d}",
            "team_id": self.team_id,
            "state": {"values": {}},
            "hash": uuid.uuid4().hex[:16],
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "private_metadata": "",
            "callback_id": "",
            **copy.deepcopy(view),
        }
        return {"ok": True, "view": opened}

    # -- helpers -----------------------------------------------------------------------------------------------

    def _page(self, items: list[Json], args: Json, *, key: str, default_limit: int, metadata: bool) -> Json:
        """Cursor paging as Slack does it: an opaque `next_cursor` while `has_more`."""
        try:
            limit = max(1, min(int(args.get("limit") or default_limit), 1000))
            start = int(base64.b64decode(args["cursor"]).decode().removeprefix("next:")) if args.get("cursor") else 0
        except (ValueError, UnicodeDecodeError):
            raise SlackError("invalid_cursor") from None
        page = [copy.deepcopy(item) for item in items[start : start + limit]]
        if not metadata:
            for item in page:
                item.pop("metadata", None)
        body: Json = {"ok": True, key: page, "has_more": start + limit < len(items)}
        if body["has_more"]:
            body["response_metadata"] = {"next_cursor": base64.b64encode(f"next:{start + limit}".encode()).decode()}
        return body

    def _channel(self, args: Json, *, by_name: bool = False) -> str:
        """The channel id an argument names; only some methods take a name, as in Slack."""
        given = str(args.get("channel") or "")
        if given in self._store:
            return given
        if by_name:
            wanted = given.removeprefix("#")
            for cid, name in self.channel_names.items():
                if name == wanted:
                    return cid
        raise SlackError("channel_not_found")

    def _find(self, channel: str, ts: str) -> Json | None:
        return next((m for m in self._store.get(channel, []) if m["ts"] == ts), None)

    def _next_ts(self) -> str:
        now = Decimal(time.time()).quantize(TICK)
        self._last_ts = max(now, self._last_ts + TICK)
        return f"{self._last_ts:.6f}"

    def _first_channel(self) -> str:
        return next(iter(self._store))

    def _user(self, user_id: str) -> Json:
        name = f"user-{user_id.lower()}"
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _trigger_id(self) -> str:
        return f"{next(self._ids)}.{int(time.time())}.{uuid.uuid4().hex}"

    def _new_response_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/response/{uuid.uuid4().hex}"


async def _arguments(request: Request) -> Json:
    """The call's arguments: the query string, then the body (JSON or form), JSON-string fields decoded."""
    args: Json = dict(request.query_params)
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and content_type == "application/json":
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError:
            raise SlackError("invalid_json") from None
        if not isinstance(parsed, dict):
            raise SlackError("invalid_json")
        args.update(parsed)
    elif body:
        args.update(parse_qsl(body.decode(), keep_blank_values=True))
    for name in JSON_FIELDS:
        if isinstance(args.get(name), str):
            try:
                args[name] = json.loads(args[name])
            except json.JSONDecodeError:
                raise SlackError(f"invalid_{name}_format" if name != "view" else "invalid_arguments") from None
    return args


def _failure(status: int, retry_after: int | None) -> Response:
    if status == 429:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429, headers=headers)
    if status >= 500:
        return HTMLResponse(f"<html><body><h1>{status}</h1>Slack is having trouble.</body></html>", status_code=status)
    return JSONResponse({"ok": False, "error": "invalid_request"}, status_code=status)


def _is_top_level(message: Json) -> bool:
    return bool(message.get("thread_ts", message["ts"]) == message["ts"])


def _flag(args: Json, name: str) -> bool:
    return str(args.get(name, "")).lower() in ("1", "true")


def _window(args: Json) -> Callable[[str], bool]:
    def bound(name: str, default: Decimal) -> Decimal:
        value = args.get(name)
        if value in (None, ""):
            return default
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise SlackError(f"invalid_ts_{name}") from None

    oldest, latest = bound("oldest", Decimal(0)), bound("latest", Decimal("Infinity"))
    inclusive = _flag(args, "inclusive")

    def within(ts: str) -> bool:
        value = Decimal(ts)
        return oldest <= value <= latest if inclusive else oldest < value < latest

    return within


def _require_content(args: Json) -> None:
    if not (args.get("text") or args.get("blocks") or args.get("attachments")):
        raise SlackError("no_text")
    if "blocks" in args:
        _check_blocks(args["blocks"], limit=50)


def _metadata(args: Json) -> Json | None:
    metadata = args.get("metadata")
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackError("invalid_metadata_format", "metadata needs an event_type and an event_payload object")
    return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}


def _check_blocks(blocks: Any, *, limit: int) -> None:
    """The Block Kit limits Slack enforces (`invalid_blocks`) that Vigil's messages come near."""

    def invalid(why: str) -> SlackError:
        return SlackError("invalid_blocks", why)

    def text_of(obj: Any, kind: str | None, most: int, where: str) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn") or not obj.get("text"):
            raise invalid(f"{where}: a text object is required")
        if kind and obj["type"] != kind:
            raise invalid(f"{where}: must be {kind}")
        if len(obj["text"]) > most:
            raise invalid(f"{where}: more than {most} characters")

    if not isinstance(blocks, list) or len(blocks) > limit:
        raise invalid(f"blocks must be a list of at most {limit}")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"{where}: a block needs a type")
        if "block_id" in block:
            if block["block_id"] in block_ids or len(str(block["block_id"])) > 255:
                raise invalid(f"{where}: block_id must be unique, at most 255 characters")
            block_ids.add(block["block_id"])
        kind = block["type"]
        if kind == "header":
            text_of(block.get("text"), "plain_text", 150, where)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                raise invalid(f"{where}: a section needs text or fields")
            if "text" in block:
                text_of(block["text"], None, 3000, where)
            fields = block.get("fields", [])
            if len(fields) > 10:
                raise invalid(f"{where}: more than 10 fields")
            for field in fields:
                text_of(field, None, 2000, where)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                raise invalid(f"{where}: a context has 1 to 10 elements")
            for element in elements:
                text_of(element, None, 3000, where)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                raise invalid(f"{where}: actions have 1 to 25 elements")
            for element in elements:
                if element.get("type") == "button":
                    text_of(element.get("text"), "plain_text", 75, where)
                    if len(str(element.get("value", ""))) > 2000 or len(str(element.get("action_id", ""))) > 255:
                        raise invalid(f"{where}: a button's value is at most 2000, its action_id 255 characters")
                    if element.get("style") not in (None, "primary", "danger"):
                        raise invalid(f"{where}: a button's style is primary or danger")

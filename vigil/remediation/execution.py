"""Carrying out one catalogue action with parameters that were already bound and checked.

Templates are rendered in one pass, so a substituted value is never scanned again: `{param}` placeholders take
the bound values (URL-quoted inside an HTTP URL; a JSON body leaf that is one placeholder alone takes the
parameter's typed value) and `${NAME}` references resolve from settings. Executors: `http` (httpx, no proxy from
the environment), `script` (a file of the allowlisted scripts folder, exec'd without a shell, stdin closed, a
minimal environment, the whole process group killed at the timeout) and `kubectl` (the same runner).

Every output and error message goes through `redact`: no secret of the settings, and no header value, ever
appears in what is returned, stored or logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

from vigil.remediation.actions import Action, HttpExecutor, KubectlExecutor, ScriptExecutor
from vigil.remediation.models import MAX_OUTPUT_CHARS, ActionOutcome
from vigil.remediation.parameters import Parameter, Scalar
from vigil.remediation.templates import PLACEHOLDER, REFERENCES, TEMPLATE, resolve_reference
from vigil.settings import Settings

REDACTED = "[redacted]"
MAX_BODY_CHARS = 1000
"""Of an HTTP answer's body, this much goes into the output."""
MAX_CAPTURE_BYTES = 64 * 1024
"""Of a process's stdout and stderr, this much is kept; the rest is read and dropped."""
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REAP_SECONDS = 5.0
KUBECTL_ENVIRONMENT = ("HOME", "KUBECONFIG")
"""Passed on to kubectl (it finds its configuration there); scripts get neither."""


@dataclass(frozen=True)
class Execution:
    outcome: ActionOutcome
    """SUCCEEDED, FAILED or DRY_RUN."""
    output: str
    """Redacted and cut to MAX_OUTPUT_CHARS."""


def secret_values(settings: Settings) -> set[str]:
    """Every secret Vigil knows: each SecretStr setting that is set (a URL's password also on its own) and each
    secret `${NAME}` reference that resolves (the chaos token, possibly from the state dir)."""
    secrets: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
            secrets.add(text)
            with contextlib.suppress(ValueError):
                password = urlsplit(text).password
                if password:
                    secrets.add(password)
    for name, reference in REFERENCES.items():
        if reference.secret:
            with contextlib.suppress(ValueError, OSError):
                secrets.add(resolve_reference(name, settings))
    return {secret for secret in secrets if secret}


def redact(text: str, settings: Settings, extra: Iterable[str] = ()) -> str:
    """`text` with every secret value (see `secret_values`, plus `extra`) replaced by `[redacted]`, longest
    first, then cut to MAX_OUTPUT_CHARS (after redacting, so a cut never leaves half a secret)."""
    for secret in sorted(secret_values(settings) | {value for value in extra if value}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[: MAX_OUTPUT_CHARS - 1] + "…"
    return text


def render(
    template: str, params: Mapping[str, str], settings: Settings, *, url: bool = False, secrets: set[str] | None = None
) -> str:
    """`{param}` → its value (URL-quoted when `url`), `${NAME}` → the reference's value; ValueError when a
    reference is unknown or unset, KeyError when a parameter is missing. Secret values resolved are added to
    `secrets` when given."""

    def substitute(match: re.Match[str]) -> str:
        reference = match[1]
        if reference is not None:
            value = resolve_reference(reference, settings)
            if secrets is not None and REFERENCES[reference].secret:
                secrets.add(value)
            return value
        value = params[match[2]]
        return quote(value, safe="") if url else value

    return TEMPLATE.sub(substitute, template)


def typed_value(parameter: Parameter, text: str) -> Scalar:
    """A bound value (the text `coerce` returned) as JSON: integer, number, boolean or string."""
    if parameter.type == "integer":
        return int(text)
    if parameter.type == "number":
        return float(text)
    if parameter.type == "boolean":
        return text == "true"
    return text


def render_body(node: Any, action: Action, params: Mapping[str, str], settings: Settings) -> Any:
    """The JSON body: a string leaf that is one placeholder alone becomes the parameter's typed value, other
    string leaves are rendered as text."""
    if isinstance(node, str):
        alone = PLACEHOLDER.fullmatch(node)
        if alone is not None and alone[1] in action.parameters:
            return typed_value(action.parameters[alone[1]], params[alone[1]])
        return render(node, params, settings)
    if isinstance(node, dict):
        return {key: render_body(value, action, params, settings) for key, value in node.items()}
    if isinstance(node, list):
        return [render_body(value, action, params, settings) for value in node]
    return node


async def execute(action: Action, params: Mapping[str, str], settings: Settings, *, dry_run: bool) -> Execution:
    """Carry out `action` with bound `params` (or, with `dry_run`, only say what would run). Never raises for
    what the action does (a refused request, a failing script): that is a FAILED outcome with the reason."""
    secrets: set[str] = set()
    try:
        executor = action.executor
        if isinstance(executor, HttpExecutor):
            return await _http(action, executor, params, settings, dry_run=dry_run, secrets=secrets)
        if isinstance(executor, ScriptExecutor):
            root = settings.remediation_scripts_dir
            if root is None:
                return _failed("script actions need VIGIL_REMEDIATION_SCRIPTS_DIR", settings, secrets)
            script = (root / executor.path).resolve()
            if not script.is_relative_to(root.resolve()):
                return _failed(f"{executor.path!r} leaves the scripts directory", settings, secrets)
            command = [str(script), *(render(arg, params, settings) for arg in executor.args)]
            environment = _environment(())
            cwd: Path | None = root
        else:
            assert isinstance(executor, KubectlExecutor)
            if not settings.kubectl_actions_enabled:
                return _failed("kubectl actions are disabled (VIGIL_KUBECTL_ACTIONS_ENABLED)", settings, secrets)
            command = ["kubectl", *(render(arg, params, settings) for arg in executor.args)]
            environment = _environment(KUBECTL_ENVIRONMENT)
            cwd = None
        if dry_run:
            return Execution(ActionOutcome.DRY_RUN, redact(f"dry run: would run {_shell_text(command)}", settings))
        return await _run_process(command, environment, cwd, action.timeout_seconds, settings)
    except (ValueError, KeyError) as exc:
        return _failed(f"cannot render the action: {exc}", settings, secrets)


def _failed(message: str, settings: Settings, secrets: Iterable[str]) -> Execution:
    return Execution(ActionOutcome.FAILED, redact(message, settings, secrets))


async def _http(
    action: Action,
    executor: HttpExecutor,
    params: Mapping[str, str],
    settings: Settings,
    *,
    dry_run: bool,
    secrets: set[str],
) -> Execution:
    url = render(executor.url, params, settings, url=True)
    body = None if executor.body is None else render_body(executor.body, action, params, settings)
    shown_body = "" if body is None else f" with body {json.dumps(body, separators=(',', ':'))}"
    if dry_run:
        names = f" (headers: {', '.join(executor.headers)})" if executor.headers else ""
        return Execution(
            ActionOutcome.DRY_RUN,
            redact(f"dry run: would {executor.method} {url}{shown_body}{names}", settings, secrets),
        )
    headers = {name: render(value, params, settings, secrets=secrets) for name, value in executor.headers.items()}
    secrets.update(headers.values())  # a header value never appears in an output, secret reference or not
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=action.timeout_seconds) as client:
            response = await client.request(executor.method, url, headers=headers, json=body)
    except httpx.TimeoutException:
        return _failed(f"{executor.method} {url}: timed out after {action.timeout_seconds:g}s", settings, secrets)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return _failed(f"{executor.method} {url} failed: {type(exc).__name__}: {reason}", settings, secrets)
    text = response.text
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + "…"
    outcome = ActionOutcome.SUCCEEDED if response.status_code in executor.expected_status else ActionOutcome.FAILED
    return Execution(outcome, redact(f"HTTP {response.status_code}: {text}", settings, secrets))


def _environment(passed: Iterable[str]) -> dict[str, str]:
    environment = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    environment.update({name: os.environ[name] for name in passed if name in os.environ})
    return environment


def _shell_text(command: list[str]) -> str:
    """The command as a person would read it (for dry runs); never executed through a shell."""
    return " ".join(arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else json.dumps(arg) for arg in command)


async def _run_process(
    command: list[str], environment: dict[str, str], cwd: Path | None, timeout: float, settings: Settings
) -> Execution:
    """Exec `command` in its own process group; exit 0 is SUCCEEDED. At the timeout, and when the caller is
    cancelled, the whole group is killed."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=environment,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return _failed(f"cannot run {command[0]}: {exc.strerror or exc}", settings, ())
    captured = bytearray()
    dropped = False

    async def collect() -> int:
        nonlocal dropped
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            room = MAX_CAPTURE_BYTES - len(captured)
            captured.extend(chunk[:room])
            dropped = dropped or len(chunk) > room
        return await process.wait()

    try:
        code = await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        await _kill_group(process)
        output = captured.decode(errors="replace")
        return _failed(f"timed out after {timeout:g}s (process group killed)\n{output}".rstrip(), settings, ())
    except BaseException:
        await _kill_group(process)
        raise
    output = captured.decode(errors="replace")
    if dropped:
        output += "\n[output cut]"
    outcome = ActionOutcome.SUCCEEDED if code == 0 else ActionOutcome.FAILED
    return Execution(outcome, redact(f"exit {code}\n{output}".rstrip(), settings))


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group, then reap the process; a bounded wait, since a descendant that left the group
    may hold the output pipe open."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(process.wait(), REAP_SECONDS)

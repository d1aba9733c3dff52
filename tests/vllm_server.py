"""A real vLLM server (the CPU build, from .venv-vllm made by scripts/setup-vllm.sh) for tests of the LLM client.

It serves the tiny random-weight Llama of tests/tiny_llama.py through vLLM's OpenAI-compatible API, with guided
decoding (llguidance) so that even random weights answer with JSON that fits the requested schema.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.support import free_port
from tests.tiny_llama import build_tiny_llama

REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# Longest prompt + completion a request may have. The KV cache (VLLM_CPU_KVCACHE_SPACE=1 GiB) holds millions of
# tokens of the tiny model, so this only bounds a request.
MAX_MODEL_LEN = 8192
# Loading vLLM takes about 40 s on two cores; leave room for a loaded CI machine.
START_TIMEOUT = 300.0
STOP_TIMEOUT = 30.0
# Guided decoding with llguidance; no optional whitespace, so a model with random weights cannot wander off into
# endless blanks between JSON tokens.
STRUCTURED_OUTPUTS_CONFIG = {"backend": "guidance", "disable_any_whitespace": True}


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    # The main venv's paths would shadow .venv-vllm's packages.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env.update(
        VLLM_TARGET_DEVICE="cpu",
        VLLM_CPU_KVCACHE_SPACE="1",  # GiB; the default (4 GiB and up) is far more than a tiny model needs
        # One torch thread is plenty for the tiny model and leaves the other cores to the test suite (on two cores
        # vLLM binds its worker to core 0 and keeps core 1 for the API server).
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    return env


def _log_tail(log_path: Path, lines: int = 40) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group (API server, engine core, worker) and wait for the server."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Children that outlived the server (it normally stops them) go too.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float) -> None:
    """Poll /v1/models until the server answers; raise with the log's tail if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with status {process.returncode} before it was ready; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            try:
                if client.get(f"{base_url}/models").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vLLM server not ready within {timeout}s; log {log_path}:\n{_log_tail(log_path)}")
            time.sleep(0.5)


@contextmanager
def start_vllm(
    model_dir: Path, served_name: str = "tiny", *, log_path: Path | None = None, timeout: float = START_TIMEOUT
) -> Iterator[str]:
    """Run vLLM's OpenAI-compatible server on `model_dir`; yield its base URL (`http://127.0.0.1:PORT/v1`).

    The server's output goes to `log_path` (default: `vllm-<served_name>.log` beside `model_dir`).
    """
    if not VLLM_PYTHON.exists():
        raise RuntimeError(f"{VLLM_PYTHON} not found: run scripts/setup-vllm.sh first")
    log_path = log_path or model_dir.parent / f"vllm-{served_name}.log"
    port = free_port()
    command = [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(MAX_MODEL_LEN),
        # No torch.compile: it would only lengthen start-up, for nothing on a tiny model.
        "--enforce-eager",
        # The weights are float32; vLLM would cast them to bfloat16, which this machine's AVX2 lacks (oneDNN then
        # falls back to plain torch matmuls with a warning per layer).
        "--dtype",
        "float32",
        "--structured-outputs-config",
        json.dumps(STRUCTURED_OUTPUTS_CONFIG),
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=_server_env(), start_new_session=True
        )
    try:
        _wait_ready(process, base_url, log_path, timeout)
        yield base_url
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def vllm_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a vLLM server serving the tiny Llama as model "tiny", shared by the whole session."""
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("vllm") / "tiny-llama")
    with start_vllm(model_dir, "tiny") as base_url:
        yield base_url

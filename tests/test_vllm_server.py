"""The real vLLM server of the tests (tests/vllm_server.py) answers as the LLM client expects: guided decoding gives
schema-valid JSON even from random weights, and an unknown model is a 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field


class Triage(BaseModel):
    """Every field is bounded (string lengths, list sizes, integer range, enums): a model with random weights stops
    only where the schema makes it, and an unbounded number or string would run on to max_tokens."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(max_length=24)
    severity: Literal["info", "warning", "critical"]
    affected_hosts: int = Field(ge=0, le=99)
    page_oncall: bool
    tags: list[Annotated[str, Field(max_length=8)]] = Field(max_length=3)


@pytest.fixture
async def client(vllm_base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=vllm_base_url, api_key="unused", max_retries=0, timeout=60) as client:
        yield client


@pytest.mark.parametrize("temperature", [0.0, 1.0])
async def test_json_schema_response_parses_into_the_model(client: openai.AsyncOpenAI, temperature: float) -> None:
    response = await client.chat.completions.create(
        model="tiny",
        messages=[
            {"role": "system", "content": "You triage alerts. Answer in JSON."},
            {"role": "user", "content": "Disk full on db-1 (/var/lib/postgresql at 100%)."},
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "triage", "schema": Triage.model_json_schema(), "strict": True},
        },
        temperature=temperature,
        seed=7,
        # Far above what the bounded schema can take, even with every character \u-escaped.
        max_tokens=600,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    assert choice.message.content is not None
    Triage.model_validate_json(choice.message.content)


async def test_unknown_model_is_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )

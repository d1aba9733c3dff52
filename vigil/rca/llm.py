"""An OpenAI-compatible client for structured answers (vLLM, or any server that speaks the API).

Requests ask for `response_format` json_schema, so a server with guided decoding returns schema-valid JSON.
Retries are Temporal's job (the client itself never retries); errors are split into retryable (timeouts,
connection errors, 429 and 5xx) and not (other 4xx, an answer that does not follow the schema or was cut at
`max_tokens`), so that an activity can fail fast on what a retry cannot fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from vigil.settings import Settings

if TYPE_CHECKING:  # openai is imported on the first request: half a second that `vigil analyze` without an LLM saves
    import openai
    from openai.types.chat import ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

AnswerT = TypeVar("AnswerT", bound=BaseModel)


class LLMError(Exception):
    """The LLM gave no usable answer. `retryable` says whether asking again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def llm_configured(settings: Settings) -> bool:
    return bool(settings.llm_base_url)


def _client(settings: Settings) -> openai.AsyncOpenAI:
    import openai

    if not settings.llm_base_url:
        raise LLMError("no LLM configured (LLM_BASE_URL is unset)", retryable=False)
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "unused"
    return openai.AsyncOpenAI(
        base_url=settings.llm_base_url, api_key=key, timeout=settings.llm_timeout_seconds, max_retries=0
    )


async def ask_structured(
    settings: Settings,
    messages: list[dict[str, str]],
    answer_type: type[AnswerT],
    schema: dict[str, Any],
    *,
    name: str,
) -> AnswerT:
    import openai

    client = _client(settings)
    response_format: ResponseFormatJSONSchema = {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": True},
    }
    try:
        response = await client.chat.completions.create(
            model=settings.llm_model,
            messages=[cast("ChatCompletionMessageParam", m) for m in messages],
            max_tokens=settings.llm_max_tokens,
            temperature=0.0,
            response_format=response_format,
        )
    except openai.APITimeoutError as exc:
        raise LLMError(f"LLM timed out after {settings.llm_timeout_seconds:g}s", retryable=True) from exc
    except openai.APIConnectionError as exc:
        raise LLMError(f"cannot reach the LLM at {settings.llm_base_url}: {exc}", retryable=True) from exc
    except openai.APIStatusError as exc:
        retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        raise LLMError(f"LLM answered HTTP {exc.status_code}: {_short(exc.message)}", retryable=retryable) from exc
    finally:
        await client.close()
    if not response.choices:
        raise LLMError("LLM returned no choices", retryable=True)
    choice = response.choices[0]
    content = choice.message.content or ""
    if choice.finish_reason == "length":
        raise LLMError(f"LLM answer cut at max_tokens={settings.llm_max_tokens}", retryable=False)
    try:
        return answer_type.model_validate_json(content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise LLMError(f"LLM answer does not follow the schema at {where}: {first['msg']}", retryable=False) from exc


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

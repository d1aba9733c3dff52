"""Did the action work? An action's verification with its parameters filled in, and one measurement of its PromQL
condition from Prometheus (the workflow measures repeatedly until the condition has held for `for_seconds`)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import httpx

from vigil.remediation.actions import CONDITION, OPERATORS, Action, PromqlVerification
from vigil.remediation.models import Measurement, VerificationSpec
from vigil.remediation.templates import PLACEHOLDER

QUERY_TIMEOUT_SECONDS = 10.0


def verification_spec(action: Action, params: Mapping[str, str]) -> VerificationSpec:
    """The action's verification with `{param}` placeholders replaced by the bound values (raw: they are confined
    by their schema); for "alerts resolved" no PromQL, condition None and for_seconds 0."""
    verification = action.verification
    if isinstance(verification, PromqlVerification):
        return VerificationSpec(
            promql=PLACEHOLDER.sub(lambda match: params[match[1]], verification.promql),
            condition=verification.condition,
            for_seconds=verification.for_seconds,
            within_seconds=verification.within_seconds,
        )
    return VerificationSpec(within_seconds=verification.within_seconds)


def _deciding(operator: str, threshold: float, values: list[float]) -> float:
    """The sample that decides whether the condition holds for every sample: the largest for `<`/`<=`, the
    smallest for `>`/`>=`, the first that fails for `==`/`!=` (else the first)."""
    if operator in ("<", "<="):
        return max(values)
    if operator in (">", ">="):
        return min(values)
    compare = OPERATORS[operator]
    return next((value for value in values if not compare(value, threshold)), values[0])


async def measure(base_url: str, promql: str, condition: str, *, timeout: float = QUERY_TIMEOUT_SECONDS) -> Measurement:
    """One instant query (`/api/v1/query`). The value is the scalar, or the vector's sample that decides (see
    `_deciding`: with several samples the condition holds only when it holds for every one of them; a NaN or
    infinite sample never holds). No data or any error give value None, holds False and the reason in `detail`."""
    match = CONDITION.fullmatch(condition)
    if match is None:
        return Measurement(value=None, holds=False, detail=f"invalid condition {condition!r}")
    operator, threshold = match[1], float(match[2])
    compare = OPERATORS[operator]
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout, trust_env=False) as client:
            response = await client.get("/api/v1/query", params={"query": promql})
    except httpx.HTTPError as exc:
        return Measurement(value=None, holds=False, detail=f"Prometheus unreachable: {type(exc).__name__}: {exc}")
    try:
        body = response.json()
    except ValueError:
        return Measurement(value=None, holds=False, detail=f"Prometheus answered HTTP {response.status_code}, not JSON")
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        error_type = body.get("errorType") if isinstance(body, dict) else None
        return Measurement(
            value=None,
            holds=False,
            detail=f"Prometheus answered HTTP {response.status_code}: {error_type or 'error'}: {error}"[:500],
        )
    try:
        samples = _samples(body["data"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return Measurement(value=None, holds=False, detail=f"unexpected Prometheus answer: {exc}"[:500])
    if not samples:
        return Measurement(value=None, holds=False, detail="no data: the query returned no samples")
    finite = [value for value in samples if math.isfinite(value)]
    if not finite:
        return Measurement(value=None, holds=False, detail=f"no finite value among {len(samples)} sample(s)")
    value = _deciding(operator, threshold, finite)
    holds = compare(value, threshold) and len(finite) == len(samples)
    which = "" if len(samples) == 1 else f" (deciding sample of {len(samples)})"
    verdict = "holds" if holds else "does not hold"
    return Measurement(value=value, holds=holds, detail=f"{value:g} {operator} {threshold:g} {verdict}{which}")


def _samples(data: dict[str, object]) -> list[float]:
    kind = data["resultType"]
    result = data["result"]
    if not isinstance(result, list):
        raise TypeError("result is not a list")
    if kind == "scalar":
        return [float(result[1])]
    if kind == "vector":
        return [float(sample["value"][1]) for sample in result]
    raise ValueError(f"result type {kind!r} (expected scalar or vector)")

"""One catalogue action: its parameters, executor, verification and optional rollback (file shape, strict)."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag, field_validator

from vigil.remediation.parameters import Parameter

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG)]
ParameterName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]

CONDITION = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpExecutor(Strict):
    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(description="`http(s)://...` or `${TOYPROD_URL}/...`, with `{param}` placeholders.")
    headers: dict[str, str] = Field(default_factory=dict, description="Values may hold `${SECRET}` references.")
    body: dict[str, Any] | None = Field(
        default=None,
        description='JSON body; string leaves are templates, and a leaf that is one placeholder alone (`"{size}"`) '
        "stands for the parameter's typed value.",
    )
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default=[200], min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"(https?://|\$\{[A-Z][A-Z0-9_]*\}/)", value):
            raise ValueError("url must start with http://, https:// or a ${NAME}/ reference")
        return value


class ScriptExecutor(Strict):
    type: Literal["script"]
    path: str = Field(min_length=1, description="Relative to the allowlisted scripts directory.")
    args: list[str] = Field(default_factory=list)


class KubectlExecutor(Strict):
    type: Literal["kubectl"]
    args: list[str] = Field(min_length=1)


Executor = Annotated[HttpExecutor | ScriptExecutor | KubectlExecutor, Field(discriminator="type")]


class PromqlVerification(Strict):
    promql: str = Field(min_length=1, description="May hold `{param}` placeholders.")
    condition: str = Field(description="An operator and a number the query's value must satisfy, e.g. `< 0.01`.")
    for_seconds: float = Field(ge=0, description="The condition must hold this long.")
    within_seconds: float = Field(default=600, gt=0, description="Give up (not recovered) after this long.")

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str) -> str:
        if not CONDITION.fullmatch(value):
            raise ValueError(f"condition must be an operator (< <= > >= == !=) and a number, e.g. '< 0.01': {value!r}")
        return value

    def holds(self, value: float) -> bool:
        match = CONDITION.fullmatch(self.condition)
        assert match is not None  # validated
        return OPERATORS[match[1]](value, float(match[2]))


class AlertsResolvedVerification(Strict):
    alerts_resolved: Literal[True]
    within_seconds: float = Field(gt=0)


def _verification_kind(value: object) -> str:
    if isinstance(value, dict):
        return "promql" if "promql" in value else "alerts_resolved"
    return "promql" if isinstance(value, PromqlVerification) else "alerts_resolved"


Verification = Annotated[
    Annotated[PromqlVerification, Tag("promql")] | Annotated[AlertsResolvedVerification, Tag("alerts_resolved")],
    Discriminator(_verification_kind),
]


class Action(Strict):
    name: Slug
    description: str = Field(min_length=1)
    parameters: dict[ParameterName, Parameter] = Field(default_factory=dict)
    executor: Executor
    timeout_seconds: float = Field(gt=0, le=3600)
    idempotent: bool
    rollback: Slug | None = Field(default=None, description="Name of another catalogue action that undoes this.")
    verification: Verification

    @property
    def targets_toyprod(self) -> bool:
        return isinstance(self.executor, HttpExecutor) and self.executor.url.startswith("${TOYPROD_URL}/")

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        """Every template of the action: (field path, text, whether secret references are allowed there)."""
        executor = self.executor
        if isinstance(executor, HttpExecutor):
            yield "executor.url", executor.url, False
            for header, value in executor.headers.items():
                yield f"executor.headers.{header}", value, True
            if executor.body is not None:
                yield from _body_templates("executor.body", executor.body)
        else:
            for index, arg in enumerate(executor.args):
                yield f"executor.args[{index}]", arg, False
        if isinstance(self.verification, PromqlVerification):
            yield "verification.promql", self.verification.promql, False


def _body_templates(path: str, node: object) -> Iterator[tuple[str, str, bool]]:
    if isinstance(node, str):
        yield path, node, False
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _body_templates(f"{path}.{key}", value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _body_templates(f"{path}[{index}]", value)

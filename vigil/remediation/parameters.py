"""Action parameters: a small JSON-schema subset, and binding from trusted sources only.

A value comes from an alert label, the diagnosed component or the file's own default; never from log text or
LLM output. Since bound values are substituted into URLs, arguments and PromQL, every string parameter must
be confined by a `pattern` or an `enum`, matched against the whole value."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vigil.remediation.errors import BindingError

MAX_STRING_LENGTH = 256
"""Longest string value whatever the parameter says."""

SOURCE_PATTERN = r"^(alert\.labels\.[A-Za-z_][A-Za-z0-9_]*|diagnosis\.component)$"
PARAMETER_NAME = re.compile(r"[a-z_][a-z0-9_]*")
INTEGER_TEXT = re.compile(r"-?[0-9]{1,18}")

Scalar = bool | int | float | str


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["string", "integer", "number", "boolean"]
    description: str = ""
    source: str | None = Field(
        default=None,
        alias="from",
        pattern=SOURCE_PATTERN,
        description="`alert.labels.<name>` or `diagnosis.component`; unset: the `default`.",
    )
    default: Scalar | None = None
    required: bool = True
    enum: list[Scalar] | None = Field(default=None, min_length=1)
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = Field(default=None, alias="maxLength", ge=1, le=MAX_STRING_LENGTH)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        if self.type != "string" and (self.pattern is not None or self.max_length is not None):
            raise ValueError(f"pattern and maxLength apply to strings only, not to {self.type}")
        if self.type not in ("integer", "number") and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"minimum and maximum apply to numbers only, not to {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        if self.type == "string" and self.pattern is None and self.enum is None:
            raise ValueError("a string parameter needs a pattern or an enum (its value is put into templates)")
        if self.source is None and self.default is None:
            raise ValueError("needs `from` or a `default`")
        for value in self.enum or []:
            _typed(self, value)
        if self.default is not None:
            coerce(self, self.default)
        return self


def _typed(parameter: Parameter, raw: Scalar) -> Scalar:
    """`raw` as the parameter's type (strings from labels are parsed), or ValueError."""
    if parameter.type == "string":
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {type(raw).__name__}")
        return raw
    if parameter.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if raw in ("true", "false"):
            return raw == "true"
        raise ValueError("expected true or false")
    if isinstance(raw, bool):
        raise ValueError(f"expected {'an integer' if parameter.type == 'integer' else 'a number'}, got a boolean")
    if parameter.type == "integer":
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and INTEGER_TEXT.fullmatch(raw):
            return int(raw)
        raise ValueError("expected an integer")
    try:
        number = float(raw)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def coerce(parameter: Parameter, raw: Scalar) -> str:
    """The value checked against the schema, as the text that goes into templates; ValueError says why not."""
    value = _typed(parameter, raw)
    if isinstance(value, str):
        limit = min(parameter.max_length or MAX_STRING_LENGTH, MAX_STRING_LENGTH)
        if len(value) > limit:
            raise ValueError(f"longer than {limit} characters")
        if parameter.pattern is not None and not re.fullmatch(parameter.pattern, value):
            raise ValueError(f"does not match pattern {parameter.pattern!r}")
    elif not isinstance(value, bool):
        if parameter.minimum is not None and value < parameter.minimum:
            raise ValueError(f"below minimum {parameter.minimum:g}")
        if parameter.maximum is not None and value > parameter.maximum:
            raise ValueError(f"above maximum {parameter.maximum:g}")
    if parameter.enum is not None and value not in [_typed(parameter, option) for option in parameter.enum]:
        raise ValueError(f"not one of {parameter.enum}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else format(value, "g") if isinstance(value, float) else str(value)


def shown(value: str) -> str:
    """A refused value, quoted and cut, so that a crafted one cannot forge log lines."""
    return repr(value if len(value) <= 60 else value[:60] + "…")


class HasParameters(Protocol):
    @property
    def parameters(self) -> Mapping[str, Parameter]: ...


def bind(action: HasParameters, alert_labels: Mapping[str, str], component: str | None) -> dict[str, str]:
    """Each parameter's value from its source (an empty label counts as absent), else its default, checked
    against its schema. Raises `BindingError` listing every missing or refused parameter."""
    bound: dict[str, str] = {}
    errors: list[str] = []
    for name, parameter in action.parameters.items():
        raw: Scalar | None = None
        if parameter.source == "diagnosis.component":
            raw = component or None
        elif parameter.source is not None:
            raw = alert_labels.get(parameter.source.removeprefix("alert.labels.")) or None
        where = parameter.source or "default"
        if raw is None:
            raw, where = parameter.default, "default"
        if raw is None:
            if parameter.required:
                errors.append(f"{name}: no value ({parameter.source} is absent and there is no default)")
            continue
        try:
            bound[name] = coerce(parameter, raw)
        except ValueError as exc:
            refused = shown(raw) if isinstance(raw, str) else repr(raw)
            errors.append(f"{name}: {refused} from {where} refused: {exc}")
    if errors:
        raise BindingError("cannot bind parameters: " + "; ".join(errors))
    return bound

"""Parsing JSON that anyone can send, without letting it crash the parser or the code after it.

`json.loads` recurses once per nesting level: 100 000 `[` make it raise RecursionError (and whatever walks the
result next would recurse as deep). A 5 000-digit integer makes it raise a plain ValueError, and `1e999` or
`NaN` give floats that no JSON encoder can write back. `loads_untrusted` turns all of these into one
`JSONInputError` with the reason, checking the nesting depth first with a scan that runs at C speed (no recursion
and no Python loop over characters), so ordinary bodies pay next to nothing.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; real payloads (Alertmanager, Loki, log lines) need under 10."""

UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
"""NUL and lone UTF-16 surrogates: JSON carries both (as `\\u0000`, `\\ud800`), but PostgreSQL stores no NUL
and no UTF-8 encoder takes a lone surrogate."""


def storable(text: str) -> str:
    """`text` with every `UNSTORABLE_TEXT` character replaced by U+FFFD, so it can be kept rather than refused."""
    return UNSTORABLE_TEXT.sub("\ufffd", text)


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_DEPTH_STEP = [0] * 256
for _opener in b"[{":
    _DEPTH_STEP[_opener] = 1
for _closer in b"]}":
    _DEPTH_STEP[_closer] = -1


class JSONInputError(ValueError):
    """The body is not JSON Vigil accepts; `reason` says why, for the 4xx answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when arrays/objects in `body` nest deeper than `limit` (brackets inside strings do not count).

    A body with at most `limit` opening brackets cannot be too deep, which settles almost every request with two
    `bytes.count`s. Otherwise strings are cut out and the running depth is a prefix sum over the brackets left."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets), initial=0)) > limit


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError(f"number {text[:40]} is out of range")
    return value


def _reject_constant(name: str) -> float:
    raise JSONInputError(f"{name} is not a JSON number")


def loads_untrusted(body: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing nesting deeper than `max_depth`, non-finite numbers (`1e999`, `NaN`, `Infinity`)
    and integers too long to convert; every failure is a `JSONInputError`."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if too_deep(raw, max_depth):
        raise JSONInputError(f"arrays and objects nest deeper than {max_depth} levels")
    try:
        return json.loads(body, parse_float=_finite_float, parse_constant=_reject_constant)
    except JSONInputError:
        raise
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise JSONInputError(str(exc)) from exc
    except (ValueError, RecursionError) as exc:  # over-long integers; nesting the scan could not see (UTF-16)
        raise JSONInputError(str(exc)[:200] or type(exc).__name__) from exc

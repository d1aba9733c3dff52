"""Masking of the variable parts of a log message, the first step of template mining.

Quoted strings are masked over the whole message first (they may hold spaces); the rest works on whitespace
tokens, with a cache of the constant words (most tokens of a log are), so a line costs one split, a few dict
lookups and one small check per variable token:

1. quoted strings (``"..."``, ``'...'``) after ``=``/``:`` or holding a digit, a slash, an ``@`` or more
   than 64 characters -> ``"<*>"``: they may hold spaces, so masking them first keeps the token count of a
   template fixed; a short quoted phrase of plain words is kept (it is usually constant text such as a klog
   message);
2. ``key=value`` -> ``key=<*>`` (also inside punctuation: ``(uid=0)`` -> ``(uid=<*>)``): the key is constant,
   the value is not;
3. URLs, e-mail addresses, absolute/relative file paths -> ``<*>``;
4. any other token that holds a digit (numbers, hex ids, UUIDs, IPs, host:port, timestamps, sizes,
   ``blk_-123``, ``node-17``, ...) -> ``<*>``, keeping the punctuation around it (``(<*>)``, ``[<*>]``, ``<*>,``);
5. long hex strings without digits are rare and left alone.

The wildcard is ``<*>`` as in Drain and Loghub. Masking never changes the number of whitespace tokens except
when a quoted string holding spaces becomes one token; runs of whitespace become one space.
"""

from __future__ import annotations

import re

WILDCARD = "<*>"

_QUOTED = re.compile(r"""(?<![\w\\])(?:"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\n]*'(?!\w))""")
_VARIABLE_HINT = re.compile(r"[\d/\\@]")
_HAS_DIGIT = re.compile(r"\d").search
_KEY = re.compile(r"[A-Za-z_@][\w.\-]{0,63}").fullmatch
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+").fullmatch
_LEAD = "([{\"'#"
_TRAIL = ")]}\"',;:.!?"
_QUOTES = "\"'"
_TOKEN_CACHE_LIMIT = 50_000
_token_cache: dict[str, str] = {}


def mask(message: str) -> str:
    """The message with its variable parts replaced by ``<*>`` and runs of whitespace collapsed."""
    if '"' in message or "'" in message:
        message = _QUOTED.sub(_quoted_replacement, message)
    cache = _token_cache
    get = cache.get
    out = []
    for tok in message.split():
        masked = get(tok)
        if masked is None:
            masked = mask_token(tok)
            if masked is tok and len(cache) < _TOKEN_CACHE_LIMIT:
                cache[tok] = tok  # only constant words are cached: variables would flood the cache
        out.append(masked)
    return " ".join(out)


def mask_token(tok: str) -> str:
    """One whitespace token masked (the punctuation around a variable is kept: ``(<*>)``, ``<*>,``)."""
    core = tok.lstrip(_LEAD)
    lead = tok[: len(tok) - len(core)]
    stripped = core.rstrip(_TRAIL)
    if not stripped:
        return tok
    trail = core[len(stripped) :]
    core = stripped
    eq = core.find("=")
    if eq > 0 and _KEY(core, 0, eq) is not None:
        if eq == len(core) - 1:
            return tok
        return f"{lead}{core[: eq + 1]}{WILDCARD}{trail.lstrip(_QUOTES)}"
    if _HAS_DIGIT(core) is not None:
        return f"{lead}{WILDCARD}{trail}"
    if (
        "://" in core
        or (core[0] in "/~." and core.count("/") >= 2)
        or ("@" in core and _EMAIL(core) is not None)
        or (len(core) > 2 and core[1] == ":" and core[2] == "\\")
    ):
        return f"{lead}{WILDCARD}{trail}"
    return tok


def _quoted_replacement(match: re.Match[str]) -> str:
    text = match.group(0)
    # A quoted phrase of plain words is usually constant text ('"SyncLoop ADD"', '"View Lock"'); one with
    # digits, paths or addresses, or a long one, is a value.
    start = match.start()
    is_value = start > 0 and match.string[start - 1] in "=:"
    if not is_value and len(text) <= 66 and _VARIABLE_HINT.search(text) is None:
        return text
    quote = text[0]
    return f"{quote}{WILDCARD}{quote}"


__all__ = ["WILDCARD", "mask", "mask_token"]

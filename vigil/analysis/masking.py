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

Then, on the token list, the parts of one value that whitespace split apart are joined, so that they cannot split
one template into many:

6. a unit after a variable joins it (``5.2 KB`` -> ``<*>``, ``(1.16 KB)`` -> ``(<*>)``, ``<1 sec`` -> ``<*>``);
7. a month or weekday name next to a variable is part of a date (``Fri Jun 17 07:07:00 2005`` -> ``<*>``);
8. a parenthesised lone variable (``(<*>)``, an optional annotation such as ``(1.16 KB)``, or an empty ``()``) is
   dropped, and a run of variables becomes one ``<*>`` (a value of several tokens, a stack of addresses).

Short quoted strings (up to three tokens, e.g. an HTTP request line ``"GET /v2/x HTTP/1.1"``) are masked token by
token, so their constant words (``GET`` / ``POST``) stay constant. The wildcard is ``<*>`` as in Drain and Loghub;
runs of whitespace become one space.
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
_UNITS = frozenset(
    (
        "b",
        "kb",
        "mb",
        "gb",
        "tb",
        "pb",
        "kib",
        "mib",
        "gib",
        "tib",
        "bytes",
        "ms",
        "us",
        "ns",
        "s",
        "sec",
        "secs",
        "second",
        "seconds",
        "min",
        "mins",
        "minute",
        "minutes",
        "h",
        "hr",
        "hrs",
        "hour",
        "hours",
    )
)
_DATE_WORDS = frozenset(
    (
        "jan",
        "feb",
        "mar",
        "apr",
        "may",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
    )
)
_SHORT_QUOTED_TOKENS = 3
_special_seen: set[str] = set()  # unit and date words met so far, in any case and punctuation


def mask(message: str) -> str:
    """The message with its variable parts replaced by ``<*>`` and runs of whitespace collapsed."""
    if '"' in message or "'" in message:
        message = _QUOTED.sub(_quoted_replacement, message)
    cache = _token_cache
    get = cache.get
    out: list[str] = []
    variables = 0
    special = False
    for tok in message.split():
        masked = get(tok)
        if masked is not None:  # only plain constant words are cached
            out.append(masked)
            continue
        if tok in _special_seen:
            special = True
            out.append(tok)
            continue
        masked = mask_token(tok)
        if masked == tok and WILDCARD not in tok:  # an already masked value (a template as input) is a variable
            bare = _bare(tok)
            if bare in _UNITS or bare in _DATE_WORDS:
                special = True  # kept apart: the words the second pass looks at
                if len(_special_seen) < _TOKEN_CACHE_LIMIT:
                    _special_seen.add(tok)
            elif len(cache) < _TOKEN_CACHE_LIMIT:
                cache[tok] = tok  # variables are never cached: they would flood the cache
            out.append(masked)
            continue
        variables += 1
        if masked == "(<*>)" or (masked == WILDCARD and out and out[-1] == WILDCARD):
            continue
        out.append(masked)
    if special and variables:
        out = _join_values(out)
    return " ".join(out)


def _bare(tok: str) -> str:
    return tok.strip(_LEAD + _TRAIL).lower()


def _join_values(toks: list[str]) -> list[str]:
    """Steps 6-8 of the module docstring, on masked tokens (only called when the message has a variable)."""
    out: list[str] = []
    n = len(toks)
    for i, tok in enumerate(toks):
        if WILDCARD not in tok:
            bare = _bare(tok)
            prev_var = bool(out) and out[-1].endswith(WILDCARD)
            if bare in _UNITS and prev_var and tok[0] not in _LEAD:
                last = out.pop() + tok[len(tok.rstrip(_TRAIL)) :]  # "(<*> KB)" -> "(<*>)"
                _append_variable(out, last)
                continue
            if bare in _DATE_WORDS and (prev_var or (i + 1 < n and toks[i + 1].startswith(WILDCARD))):
                while out and _bare(out[-1]) in _DATE_WORDS:  # "Fri Jun 17" -> one value
                    out.pop()
                tok = WILDCARD + tok[len(tok.rstrip(_TRAIL)) :]
            else:
                out.append(tok)
                continue
        _append_variable(out, tok)
    return out


def _append_variable(out: list[str], tok: str) -> None:
    if tok == "(<*>)":
        return
    if tok == WILDCARD and out and out[-1] == WILDCARD:
        return
    out.append(tok)


def mask_token(tok: str) -> str:
    """One whitespace token masked (the punctuation around a variable is kept: ``(<*>)``, ``<*>,``)."""
    core = tok.lstrip(_LEAD)
    lead = tok[: len(tok) - len(core)]
    stripped = core.rstrip(_TRAIL)
    if not stripped:
        # "()" is an empty value where others have "(host.example.com)": the same optional annotation
        return "(<*>)" if tok == "()" else tok
    trail = core[len(stripped) :]
    core = stripped
    eq = core.find("=")
    if eq > 0 and _KEY(core, 0, eq) is not None:
        if eq == len(core) - 1:
            return tok
        # closing brackets belong to the value unless they close one the token opened: ws=Source{7}, -> ws=<*>,
        if not trail or trail == ",":
            return f"{lead}{core[: eq + 1]}{WILDCARD}{trail}"
        value = core[eq + 1 :] + trail
        tail = value[len(value.rstrip(_TRAIL)) :]
        closers = [i for i, c in enumerate(tail) if c in ")]}"]
        drop = len(closers) - sum(lead.count(c) for c in "([{")
        if drop > 0:
            tail = tail[closers[drop - 1] + 1 :]
        return f"{lead}{core[: eq + 1]}{WILDCARD}{tail.lstrip(_QUOTES)}"
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
    inner = text[1:-1].split()
    if not is_value and 1 < len(inner) <= _SHORT_QUOTED_TOKENS:
        # a short phrase such as an HTTP request line: its words are kept ("GET" and "POST" stay apart)
        return quote + " ".join(mask_token(tok) for tok in inner) + quote
    return f"{quote}{WILDCARD}{quote}"


__all__ = ["WILDCARD", "mask", "mask_token"]

"""Sparse lexical vectors for the hybrid search: identifier-aware tokens, BM25 term weights, hashed ids.

Alert names, metric names and label values are identifiers (`KubePodCrashLooping`, `node_filesystem_avail_bytes`,
`checkout-api`), which a general-purpose word tokenizer keeps whole and a dense model sees as a few sub-words. Each
identifier yields its joined, lower-cased form (an exact match on the full name is the strongest evidence there is)
and its parts, split at case changes, `_`, `-`, `.` and letter/digit boundaries; parts are lightly stemmed, and
English function words and one-character parts dropped.

Documents carry the BM25 term-frequency part, `tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))`; the IDF
part is Qdrant's (`Modifier.IDF` on the sparse vector), computed over the collection at query time. Queries carry
weight 1 per distinct token. Token ids are a stable hash, so no vocabulary has to be stored or shared.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from functools import lru_cache
from typing import NamedTuple

BM25_K1 = 1.2
BM25_B = 0.75
#: Typical chunk length in tokens; with no corpus statistics at index time it stands in for BM25's average.
AVERAGE_LENGTH = 120.0

_WORD = re.compile(r"[A-Za-z0-9]+(?:[._\-/:][A-Za-z0-9]+)*")
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

#: English function words. `no` and `not` are missing on purpose: `NotReady`, "no leader", "not ready".
_STOPWORDS = """a an and are as at be been being but by can could did do does for from had has have how i if in into is
it its may might must of on or our over should so such than that the their them then there these they this those to
under up was we were what when where which while who why will with would you your"""
STOPWORDS = frozenset(_STOPWORDS.split())


def _stem(word: str) -> str:
    """A light suffix stripper (plurals, -ing, -ed, final e): `crashes`/`crashing`/`crashed` all match `crash`."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "shes", "ches", "xes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> run
            break
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]  # expire, expiring, expired -> expir
    return word


@lru_cache(maxsize=65536)
def _word_tokens(word: str) -> tuple[str, ...]:
    parts = [p.lower() for p in _PART.findall(word)]
    joined = "".join(parts)
    # Single characters are dropped: in pod and node names (`api-7d9f8b6c4-x2lqp`) they are hash debris, rare
    # in the runbooks and so, by IDF, loud; the joined identifier still matches whole.
    tokens = [_stem(p) for p in parts if len(p) > 1 and p not in STOPWORDS]
    if len(parts) > 1:
        tokens.append(joined)  # the identifier as a whole: `kubepodcrashlooping`
    return tuple(tokens)


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens of `text`; identifiers give their parts and their joined form."""
    tokens: list[str] = []
    for word in _WORD.findall(text):
        tokens.extend(_word_tokens(word))
    return tokens


class SparseTerms(NamedTuple):
    """A sparse vector as the stores take it: token ids and their weights (engine-neutral)."""

    indices: list[int]
    values: list[float]


@lru_cache(maxsize=65536)
def token_id(token: str) -> int:
    """Stable 32-bit id of a token (the same in every process and version, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "big")


def document_vector(text: str) -> SparseTerms:
    """BM25 term-frequency weights of a document's tokens."""
    counts = Counter(tokenize(text))
    length = sum(counts.values())
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / AVERAGE_LENGTH)
    weights: dict[int, float] = {}
    for token, tf in counts.items():
        index = token_id(token)
        weights[index] = weights.get(index, 0.0) + tf * (BM25_K1 + 1) / (tf + norm)
    return SparseTerms(list(weights), list(weights.values()))


def query_vector(text: str) -> SparseTerms:
    """Weight 1 per distinct query token: Qdrant's IDF does the rest."""
    indices = sorted({token_id(token) for token in tokenize(text)})
    return SparseTerms(indices, [1.0] * len(indices))

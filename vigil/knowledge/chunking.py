"""Split runbooks into retrievable chunks that keep their context: document title and section heading path.

Markdown is split at ATX headings (`#` .. `######`, not inside fenced code blocks); a YAML front matter block is
dropped, its `title` used when present. The title is the first level-1 heading, else the front matter title, else
the file name. A section longer than `max_chars` is cut at paragraph boundaries, and long paragraphs between lines
(never inside a fenced code block). Plain text files are split at
paragraphs under the file name as title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAX_CHARS = 700  # ~220 tokens of runbook text: with the title line, within MiniLM's 256-token window
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_FRONT_MATTER_TITLE = re.compile(r"^title:\s*['\"]?(.+?)['\"]?\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Chunk:
    title: str
    headings: tuple[str, ...]  # the section's heading path below the title
    body: str

    @property
    def section(self) -> str:
        return " > ".join(self.headings)

    @property
    def text(self) -> str:
        """What is embedded, indexed and returned: title, heading path, then the section's text."""
        head = " > ".join((self.title, *self.headings))
        return f"{head}\n{self.body}" if self.body else head


def _title_from_name(path: Path) -> str:
    return path.stem.replace("_", " ").replace("-", " ").strip() or path.name


def _split_front_matter(text: str) -> tuple[str | None, str]:
    if not text.startswith("---\n"):
        return None, text
    end = text.find("\n---", 4)
    if end < 0:
        return None, text
    match = _FRONT_MATTER_TITLE.search(text[4:end])
    rest = text[end + 4 :]
    return (match.group(1).strip() if match else None), rest.split("\n", 1)[1] if "\n" in rest else ""


def _paragraphs(body: str) -> list[list[str]]:
    """`body` as paragraphs (split at blank lines) of units: a line, or a whole fenced code block."""
    paragraphs: list[list[str]] = [[]]
    fence: list[str] | None = None
    for line in body.split("\n"):
        if fence is not None:
            fence.append(line)
            if _FENCE.match(line):
                paragraphs[-1].append("\n".join(fence))
                fence = None
        elif _FENCE.match(line):
            fence = [line]
        elif line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    if fence is not None:
        paragraphs[-1].append("\n".join(fence))
    return [p for p in paragraphs if p]


def _pieces(body: str, max_chars: int) -> list[str]:
    """`body` cut into pieces of at most `max_chars`: at blank lines, and a longer paragraph (a list, say) between
    its lines; a code block, or a line, longer than `max_chars` stays whole."""
    pieces: list[str] = []
    current = ""
    for paragraph in _paragraphs(body):
        for index, unit in enumerate(paragraph):
            separator = "\n" if index else "\n\n"
            if current and len(current) + len(separator) + len(unit) > max_chars:
                pieces.append(current)
                current = unit
            else:
                current = f"{current}{separator}{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def chunk_markdown(text: str, name: str, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Chunks of one markdown document; `name` is the fallback title (the file name)."""
    front_title, text = _split_front_matter(text.replace("\r\n", "\n"))
    sections: list[tuple[int, str, list[str]]] = [(0, "", [])]  # (level, heading, body lines)
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            sections.append((len(match.group(1)), match.group(2).strip(), []))
        else:
            sections[-1][2].append(line)

    title = front_title or name
    h1 = [heading for level, heading, _ in sections if level == 1]
    title_level = 0
    if h1 and not front_title:
        title, title_level = h1[0], 1
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    for level, heading, lines in sections:
        if level:
            path = [(lvl, h) for lvl, h in path if lvl < level]
            if not (level == title_level and heading == title and not path):
                path.append((level, heading))
        body = "\n".join(lines).strip()
        if not body:
            continue
        headings = tuple(h for _, h in path)
        chunks.extend(Chunk(title, headings, piece) for piece in _pieces(body, max_chars))
    return chunks


def chunk_text(text: str, name: str, max_chars: int = MAX_CHARS) -> list[Chunk]:
    return [Chunk(name, (), piece) for piece in _pieces(text.replace("\r\n", "\n"), max_chars)]


def chunk_file(path: Path, text: str) -> list[Chunk]:
    name = _title_from_name(path)
    if path.suffix.lower() in {".md", ".markdown"}:
        return chunk_markdown(text, name)
    return chunk_text(text, name)

"""`vigil logs parse`: every input line -> {"line", "template_id", "template"} as JSON lines."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from vigil.analysis.normalise import normalise
from vigil.analysis.templates import TemplateMiner


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\n")


def mine_lines(lines: Iterable[str], miner: TemplateMiner, *, message_only: bool) -> list[tuple[int, str]]:
    """(line number, template id at the time) for every input line; folded lines share their event's id."""
    out: list[tuple[int, str]] = []
    if message_only:
        for number, line in enumerate(lines, start=1):
            out.append((number, miner.add(line).template_id))
        return out
    for event in normalise(lines):
        template_id = miner.add(event.message).template_id
        out.extend((number, template_id) for number in range(event.line, event.line + event.line_count))
    return out


def run_parse(file: str, *, message_only: bool, state: str | None, out: TextIO | None = None) -> int:
    """Read ``file`` ('-' for stdin), write one JSON object per input line to ``out`` (stdout); 0 on success.

    The ids written are the final ones: the whole input is mined first, then every line gets the current id
    of its template (templates merged during the run resolve to the surviving id)."""
    target = out or sys.stdout
    miner = TemplateMiner()
    if state and Path(state).exists():
        try:
            miner = TemplateMiner.load(state)
        except (OSError, ValueError) as exc:
            print(f"error: cannot load the miner state: {exc}", file=sys.stderr)
            return 2
    with ExitStack() as stack:
        if file == "-":
            stream: TextIO = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        else:
            try:
                stream = stack.enter_context(open(file, encoding="utf-8", errors="replace"))
            except OSError as exc:
                print(f"error: cannot read {file}: {exc.strerror or exc}", file=sys.stderr)
                return 2
        assigned = mine_lines(_lines(stream), miner, message_only=message_only)
    for number, template_id in assigned:
        current = miner.resolve(template_id)
        record = {"line": number, "template_id": current, "template": miner.template(current) or ""}
        target.write(json.dumps(record, ensure_ascii=False) + "\n")
    target.flush()
    if state:
        miner.save(state)
    return 0


__all__ = ["mine_lines", "run_parse"]

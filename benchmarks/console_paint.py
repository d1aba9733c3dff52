"""`vigil bench console-paint`: the incident list's time to first paint in a real browser, with 1,000 incidents.

Two throwaway PostgreSQL servers (embedded pgserver, in a temporary folder) receive incidents written with the
store's own `persist_incident` (`benchmarks.console.seed`: alerts with repeats, acknowledgements, diagnoses): 1,000
for the timed list, a handful (default 10) for the baseline. A `python -m vigil console` serves each, and one
headless chromium (selenium, Debian chromedriver) signs in to both, then loads the two lists in turns: a warm-up
load of each, then rounds of one timed load of each, so the baseline is measured in the same run, browser and
moment as the list it is compared with.

Per load, from the navigation's start (`performance.now()` is 0 there): the server's response, DOMContentLoaded,
first contentful paint (Paint Timing), "list ready" (a MutationObserver, installed before the page's own scripts,
sees the row-count label say the list was read and the table hold rows) and "list painted" (two animation frames
later: the frame with the rows has been drawn). The table scrolls virtually and a tab holds at most LIST_LIMIT
rows, so with 1,000 incidents the label reads "newest 500 incidents" and the DOM holds the first screenful.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.console import seed
from ui.console import LIST_LIMIT, list_message
from vigil.auth.roles import Role
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import IncidentListQuery, Store, migrate_database

if TYPE_CHECKING:
    from tests.browser_support import Browser

REPO_ROOT = Path(__file__).resolve().parent.parent

PROBE = """
(() => {
  const seen = () => {
    const label = document.querySelector('[data-testid="incident-list-message"]');
    const rows = document.querySelectorAll('[data-testid="incident-row"]').length;
    if (!label || !label.textContent.includes(' · live, read') || rows === 0) return false;
    const mark = {ready: performance.now(), label: label.textContent, rows: rows};
    window.__vigilListPaint = mark;
    requestAnimationFrame(() => requestAnimationFrame(() => { mark.painted = performance.now(); }));
    return true;
  };
  new MutationObserver((_, observer) => { if (seen()) observer.disconnect(); })
    .observe(document, {childList: true, subtree: true, characterData: true});
})();
"""
"""Runs in every page before its own scripts (CDP Page.addScriptToEvaluateOnNewDocument)."""

READ_TIMINGS = """
const mark = window.__vigilListPaint;
if (!mark || mark.painted === undefined) return null;
const nav = performance.getEntriesByType('navigation')[0];
const fcp = performance.getEntriesByName('first-contentful-paint')[0];
return {
  response: nav.responseEnd, dom: nav.domContentLoadedEventEnd, fcp: fcp ? fcp.startTime : null,
  ready: mark.ready, painted: mark.painted, rows: mark.rows, label: mark.label,
};
"""

LABEL_SEPARATOR = " · "

FIGURES = {
    "response": "server response end (ms)",
    "dom": "DOMContentLoaded (ms)",
    "fcp": "first contentful paint (ms)",
    "ready": "list ready: label + rows (ms)",
    "painted": "list painted (ms)",
    "rows": "rows in the DOM when ready",
}


@dataclass
class Loads:
    """The loads of one list size: every figure of every load."""

    incidents: int
    label: str
    figures: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.figures[name])


def expected_label(incidents: int) -> str:
    """What the row-count label says (before ` · live, read …`) once a tab read the list of `incidents`."""
    return list_message(min(incidents, LIST_LIMIT), LIST_LIMIT, datetime.now(UTC)).split(LABEL_SEPARATOR)[0]


async def _seed(url: str, count: int, tag: str) -> None:
    await migrate_database(url)
    async with await Store.open(url) as store:
        await seed(store, count, tag)
        stored = await store.incident_list(IncidentListQuery(limit=count + 1))
    if len(stored) != count:
        raise AssertionError(f"{len(stored)} incidents in the store after seeding {count}")


def load(browser: Browser, expected: str) -> dict[str, Any]:
    """Load `/` once and return its timings, checking that the list shows what it should."""
    browser.driver.get(browser.base_url + "/")
    timings: dict[str, Any] = browser.wait(
        lambda driver: driver.execute_script(READ_TIMINGS), f"the list at {browser.base_url} never painted", 60
    )
    if str(timings["label"]).split(LABEL_SEPARATOR)[0] != expected:
        raise AssertionError(f"the list says {timings['label']!r}, expected {expected!r}")
    return timings


def measure(lists: list[tuple[Browser, Loads]], repeats: int) -> None:
    """One warm-up load of each list, then `repeats` rounds of one timed load of each, in turns (the order
    alternating between rounds), so that a busy moment of the machine weighs on both alike."""
    for browser, loads in lists:
        load(browser, loads.label)
    for round_number in range(repeats):
        for browser, loads in lists if round_number % 2 == 0 else lists[::-1]:
            timings = load(browser, loads.label)
            for name in FIGURES:
                if timings[name] is not None:
                    loads.figures[name].append(float(timings[name]))


def _checkout_on_path() -> None:
    """The browser and console helpers are the browser tests' (tests/browser_support.py), and `tests/` is not
    installed with Vigil: the source checkout's root goes on sys.path."""
    if not (REPO_ROOT / "tests" / "browser_support.py").exists():
        raise SystemExit(f"no tests/browser_support.py under {REPO_ROOT}: run from a source checkout")
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))


def bench(incidents: int, baseline: int, repeats: int) -> tuple[Loads, Loads, float]:
    """Two throwaway stores (the baseline's and the timed list's), a console on each, one browser for both."""
    _checkout_on_path()
    from tests.browser_support import WINDOW_SIZE, Browser, ConsoleProcess, chromium_on, make_users, running_console
    from tests.support import free_port

    with tempfile.TemporaryDirectory(prefix="vigil-bench-paint-") as folder_name, ExitStack() as stack:
        folder = Path(folder_name)
        small_db = start_embedded_postgres(folder / "pg-baseline")
        stack.callback(small_db.stop)
        large_db = start_embedded_postgres(folder / "pg-timed")
        stack.callback(large_db.stop)
        tag = uuid.uuid4().hex[:8]
        asyncio.run(_seed(small_db.url, baseline, tag))
        seeded = asyncio.run(_timed_seed(large_db.url, incidents, tag))
        users_file = folder / "users.json"
        reader = make_users(users_file, {"paint-bench": Role.VIEWER})["paint-bench"]
        consoles = [
            ConsoleProcess(
                folder=folder / f"console-{name}",
                temporal_address=f"127.0.0.1:{free_port()}",  # nothing listens: the list reads PostgreSQL only
                database_url=url,
                users_file=users_file,
                host=host,
            )
            for name, url, host in (("baseline", small_db.url, "127.0.0.1"), ("timed", large_db.url, "localhost"))
        ]
        for console in consoles:
            stack.enter_context(running_console(console))
        first = stack.enter_context(chromium_on(consoles[0].base_url))
        second = Browser(first.driver, consoles[1].base_url)
        for browser in (first, second):
            browser.sign_in(reader)
        first.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE})
        small = Loads(baseline, expected_label(baseline), {name: [] for name in FIGURES})
        large = Loads(incidents, expected_label(incidents), {name: [] for name in FIGURES})
        measure([(first, small), (second, large)], repeats)
        version = str(first.driver.capabilities.get("browserVersion", "?"))
    print(f"chromium {version}, headless, window {WINDOW_SIZE[0]}x{WINDOW_SIZE[1]}")
    return small, large, seeded


async def _timed_seed(url: str, count: int, tag: str) -> float:
    started = asyncio.get_running_loop().time()
    await _seed(url, count, tag)
    return asyncio.get_running_loop().time() - started


def report(small: Loads, large: Loads, repeats: int) -> str:
    head = f"{small.incidents} incidents (baseline)"
    big = f"{large.incidents} incidents ({large.label})"
    lines = [
        f"console list `/`, medians of {repeats} loads after a warm-up; times from navigation start",
        f"  {'':<32} {head:>26} {big:>34} {'ratio':>7}",
    ]
    for name, title in FIGURES.items():
        if not small.figures[name] or not large.figures[name]:
            continue
        base, value = small.median(name), large.median(name)
        ratio = f"x{value / base:.2f}" if base else "-"
        number = "{:>26.0f} {:>34.0f}" if name == "rows" else "{:>26.1f} {:>34.1f}"
        lines.append(f"  {title:<32} " + number.format(base, value) + f" {ratio:>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=1000, help="incidents in the store for the timed list")
    parser.add_argument("--baseline", type=int, default=10, help="incidents in the store for the baseline list")
    parser.add_argument("--repeats", type=int, default=5, help="timed loads of each list")
    args = parser.parse_args(argv)
    if not 0 < args.baseline < args.incidents:
        parser.error("need 0 < --baseline < --incidents")
    small, large, seeded = bench(args.incidents, args.baseline, args.repeats)
    print(f"{args.incidents} incidents seeded for the timed list in {seeded:.1f} s")
    print(report(small, large, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

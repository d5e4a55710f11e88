"""Drive Debian's headless Chromium through Playwright (its own browser download is never used).

`missing_reason()` says why a browser test cannot run here (no chromium, no playwright), so tests
skip with that reason; `open_page()` loads a file:// page in a fresh profile and records every
request the page makes, console errors and Content-Security-Policy violations.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

CHROMIUM = os.environ.get("NETVIZ_CHROMIUM", "/usr/bin/chromium")

# No sandbox because the tests run as root; the rest keeps Chromium from phoning home, so any
# request the page log shows came from the page itself.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--enable-precise-memory-info",  # performance.memory exact, not rounded and delayed
]

# Recorded before any page script runs: CSP violations show up here rather than passing silently.
_RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def missing_reason() -> Optional[str]:
    """Why the browser tests cannot run on this machine, or None when they can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright; no browser download needed)"
    return None


@dataclass
class PageLog:
    """What a page did besides drawing: requests it made, console errors, uncaught exceptions."""

    profile: str = ""
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@contextmanager
def browser(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A headless Chromium context with a new empty profile, closed and removed afterwards."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="netviz-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": width, "height": height},
            )
            context.netviz_profile = profile
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def open_page(html_path: Path, width: int = 1400, height: int = 900, timeout_s: float = 30.0,
              fragment: str = "") -> Iterator[tuple[Any, PageLog]]:
    """Open `html_path` from disk (with `#fragment` when given) and wait for the map's
    `window.netvizReady`; yields (page, log)."""
    with browser(width, height) as context:
        page = context.pages[0] if context.pages else context.new_page()
        log = PageLog(profile=context.netviz_profile)
        page.on("request", lambda request: log.requests.append(request.url))
        page.on("console", lambda message: log.console_errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))
        page.add_init_script(_RECORD_VIOLATIONS)
        # A large page may take longer to load than Playwright's default 30 s: the caller's limit holds.
        page.goto(Path(html_path).resolve().as_uri() + (f"#{fragment}" if fragment else ""), timeout=timeout_s * 1000)
        # Polled from here: Playwright's wait_for_function polls by evaluating a string inside the
        # page, which the page's Content-Security-Policy (no eval) refuses once the map is not
        # ready at the first look (a large map inflates its data after the first view).
        deadline = time.monotonic() + timeout_s
        while not page.evaluate("window.netvizReady === true"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the map was not ready after {timeout_s:.0f} s: {log.page_errors or 'no page error'}")
            time.sleep(0.05)
        yield page, log


def screenshot_html(html_path: Path, png_path: Path, width: int = 1600, height: int = 1000) -> None:
    """Save a PNG of the page as first drawn (used for docs/img/lab-map.png)."""
    with open_page(html_path, width, height) as (page, _log):
        page.wait_for_timeout(300)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png_path))


def browser_cpu_seconds(profile: str) -> float:
    """CPU seconds used so far by the Chromium started with `profile`, all its processes together.

    On a busy machine wall-clock times swing with other programs' load; CPU time does not, so
    benchmarks print both.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    usage: dict[int, float] = {}
    roots: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read().decode("utf-8", "replace")
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline_file:
                cmdline = cmdline_file.read().decode("utf-8", "replace")
        except OSError:
            continue  # exited while we looked
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        usage[pid] = (int(fields[11]) + int(fields[12])) / ticks
        if f"--user-data-dir={profile}" in cmdline and "--type=" not in cmdline:
            roots.append(pid)
    tree = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(usage[pid] for pid in tree)


def next_frame(page: Any) -> None:
    """Wait until the page has drawn two frames. Cytoscape applies style changes by frame: read
    right after a class changes, an element hidden by it may still say it is visible."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


# Returns nothing on purpose: Playwright serializes whatever an evaluated function returns, and a
# Cytoscape element reaches the whole graph (on a 200-host map, 2.7 GB of heap and 12 s per tap).
_TAP = "(id) => { window.netviz.cy.getElementById(id).emit('tap'); }"


def tap(page: Any, element_id: str) -> None:
    """Tap a node or edge of the map, as a click on it would."""
    page.evaluate(_TAP, element_id)

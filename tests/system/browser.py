"""Headless Chromium for the monitor's page tests: load a URL, let its script run, parse the DOM.

Debian's ``chromium`` package (.ci/run installs it). ``--dump-dom`` prints the DOM after the
page's script ran for a budget of Chromium's virtual time, so polling pages settle without real
waits; the DOM is parsed with the standard library's HTML parser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def need_browser() -> str:
    """The Chromium executable; skip the test without one (fail in CI, where .ci/run installs it)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return CHROMIUM


def dump_dom(url: str, tmp: Path, budget_ms: int = 6000) -> str:
    """The page's DOM after its script ran for ``budget_ms`` of Chromium's virtual time."""
    exe = need_browser()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


class Dom(HTMLParser):
    """Elements as (tag, attrs, text) with their text content gathered (enough for these checks)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = {"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "text": ""}
        self.elements.append(node)
        if tag not in ("img", "br", "meta", "link", "input", "line", "rect", "polyline"):
            self._open.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for node in self._open:
            node["text"] += data

    def by_id(self, ident: str) -> dict[str, Any]:
        """The element with this id."""
        return next(e for e in self.elements if e["attrs"].get("id") == ident)

    def by_class(self, cls: str) -> list[dict[str, Any]]:
        """The elements carrying this class, in document order."""
        return [e for e in self.elements if cls in e["attrs"].get("class", "").split()]

"""Helpers of the browser tests (types and constants); fixtures live in conftest.py.

Not imported as ``conftest``, which is ambiguous across test directories.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import BrowserContext

from e2e.conftest import ROOT, Server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "browser"
ACTION_TIMEOUT_MS = 10_000

NewContext = Callable[[], BrowserContext]


@dataclass
class Site:
    """The running service and the URL of its account page."""

    server: Server
    origin: str  # http://localhost:PORT

    @property
    def account_url(self) -> str:
        return f"{self.origin}/account"


@dataclass
class OtherOrigin:
    """A page served from ``http://localhost:PORT``: the same site, another origin."""

    origin: str

    @property
    def url(self) -> str:
        return f"{self.origin}/"

"""What the page tests drive (Playwright's async API and Debian's Chromium), and what they
do without it: skip, saying why, on a machine that cannot have it; fail, saying why, where
the browser is required, since CI must run them. `EX_REQUIRE_BROWSER=1` requires it (`.ci/run`
sets it) and `EX_REQUIRE_BROWSER=0` does not; unset, it is required when `CI` is set, as CI
services set it.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Mapping
from typing import Any, NoReturn

import pytest

REQUIRE = "EX_REQUIRE_BROWSER"
NO = frozenset({"", "0", "false", "no", "off"})


def requirement(env: Mapping[str, str]) -> str | None:
    """The setting that makes a missing browser fail the page tests (None: they skip)."""
    name = REQUIRE if REQUIRE in env else "CI"
    value = env.get(name, "")
    return None if value.strip().lower() in NO else f"{name}={value}"


def no_browser(missing: str, remedy: str, env: Mapping[str, str]) -> NoReturn:
    """End the test for want of a browser: a failure where it is required, else a skip."""
    required = requirement(env)
    if required is not None:
        pytest.fail(f"{missing}, and {required} requires the page tests to run: {remedy}",
                    pytrace=False)
    pytest.skip(f"{missing}: {remedy} (with {REQUIRE}=1, as in CI, this fails)")


def import_playwright() -> Any | None:
    """Playwright's async API, or None when it cannot be imported."""
    try:
        return importlib.import_module("playwright.async_api")
    except ImportError:
        return None


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser(playwright: Any | None, chromium: str | None,
                    env: Mapping[str, str]) -> str:
    """The Chromium to drive when Playwright is there too; else the test ends (`no_browser`)."""
    if playwright is None:
        no_browser("playwright cannot be imported",
                   "./ops/test installs it with the dev extra (pip install -e '.[dev]')", env)
    if chromium is None:
        no_browser("no Chromium to drive (no chromium or chromium-browser on PATH)",
                   "./ops/test installs Debian's chromium with apt-get when it runs as root "
                   "or has passwordless sudo", env)
    return chromium

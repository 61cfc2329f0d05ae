"""The page tests' policy without a browser: a skip with its reason on a machine that
cannot have one, a failure with its reason in CI (`tests/page/browser.py`), and `.ci/run`
requiring the browser while it runs the README's test command, `./ops/test`, as it is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.page.browser import require_browser, requirement
from tests.system import REPO

PLAYWRIGHT = object()  # stands for the imported module: only its absence matters here


@pytest.mark.parametrize(("env", "required"), [
    ({}, None),
    ({"CI": ""}, None),
    ({"CI": "false"}, None),
    ({"CI": "0"}, None),
    ({"CI": "true"}, "CI=true"),
    ({"CI": "1"}, "CI=1"),
    ({"EX_REQUIRE_BROWSER": "1"}, "EX_REQUIRE_BROWSER=1"),
    ({"EX_REQUIRE_BROWSER": "yes"}, "EX_REQUIRE_BROWSER=yes"),
    ({"EX_REQUIRE_BROWSER": "0"}, None),
    ({"EX_REQUIRE_BROWSER": "off", "CI": "true"}, None),  # the explicit setting decides
    ({"EX_REQUIRE_BROWSER": "1", "CI": "false"}, "EX_REQUIRE_BROWSER=1"),
])
def test_the_browser_is_required_in_ci_or_when_asked(env: dict[str, str],
                                                      required: str | None) -> None:
    assert requirement(env) == required


@pytest.mark.parametrize(("playwright", "chromium", "missing"), [
    (None, "/usr/bin/chromium", "playwright cannot be imported"),
    (PLAYWRIGHT, None, "no Chromium to drive"),
    (None, None, "playwright cannot be imported"),
])
def test_without_a_browser_the_page_tests_skip_or_fail_saying_why(
        playwright: Any, chromium: str | None, missing: str) -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_browser(playwright, chromium, {})
    assert missing in str(skipped.value)
    assert "./ops/test installs" in str(skipped.value)
    assert "EX_REQUIRE_BROWSER=1" in str(skipped.value)

    for env, required in (({"EX_REQUIRE_BROWSER": "1"}, "EX_REQUIRE_BROWSER=1"),
                          ({"CI": "true"}, "CI=true")):
        with pytest.raises(pytest.fail.Exception) as failed:
            require_browser(playwright, chromium, env)
        assert missing in str(failed.value)
        assert f"{required} requires the page tests to run" in str(failed.value)


def test_with_a_browser_the_page_tests_drive_it() -> None:
    for env in ({}, {"EX_REQUIRE_BROWSER": "1"}):
        assert require_browser(PLAYWRIGHT, "/usr/bin/chromium", env) == "/usr/bin/chromium"


def test_ci_runs_the_readme_test_command_requiring_the_browser(tmp_path: Path) -> None:
    (tmp_path / ".ci").mkdir()
    shutil.copy2(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "ops").mkdir()
    stub = tmp_path / "ops" / "test"  # stands for ./ops/test: says how it was run
    stub.write_text('#!/usr/bin/env bash\necho "$PWD|${EX_REQUIRE_BROWSER-unset}|$#"\n')
    stub.chmod(0o755)
    done = subprocess.run([str(tmp_path / ".ci" / "run")], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin"}, timeout=10)
    assert done.stdout == f"{tmp_path}|1|0\n"

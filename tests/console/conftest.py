"""Browser fixtures: Debian's chromium (``apt-get install chromium``; run-tests.sh installs it
when missing) driven by Playwright for Python. ``playwright install`` is never run: the system
browser is launched by path, headless, with nothing that reaches the network."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed (run-tests.sh installs it with apt)")
    launched = playwright_driver.chromium.launch(executable_path=path, headless=True, args=ARGS)
    yield launched
    launched.close()


ARTIFACTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """Where screenshots go: ``LLM_ROUTER_TEST_ARTIFACTS``, else a pytest temp dir (its path is
    printed in the test summary)."""
    given = os.environ.get("LLM_ROUTER_TEST_ARTIFACTS")
    path = Path(given) if given else tmp_path_factory.mktemp("console-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    pytestconfig.stash[ARTIFACTS] = path
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    path = config.stash.get(ARTIFACTS, None)
    if path is not None:
        terminalreporter.write_line(f"console screenshots and measurements: {path}")

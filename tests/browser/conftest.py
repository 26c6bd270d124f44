"""A real ``targeting serve`` and a real headless Chromium for the reach-page tests.

The service runs in a subprocess on a free loopback port over a small generated
population. Chromium is Debian's ``/usr/bin/chromium`` (``CHROMIUM`` overrides),
driven by Playwright's Python driver; nothing is downloaded at test time. Without
Chromium or Playwright the tests skip, except under ``CI``, where that fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import (
    AD_SERVER_KEY,
    ADVERTISER_KEY,
    CHROMIUM_FLAGS,
    REPO,
    USERS,
    Service,
    chromium_binary,
    missing,
    start_service,
    stop_service,
)


@pytest.fixture(scope="session")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from targeting.population import generate_population
    from targeting.taxonomy import Taxonomy

    out = tmp_path_factory.mktemp("population") / "profiles.parquet"
    tx = Taxonomy.load(REPO / "rules" / "taxonomy")
    return Path(generate_population(out, USERS, taxonomy=tx, seed=7, progress=False))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, profiles: Path) -> Iterator[Service]:
    """`targeting serve` without --auth: the open local demo."""
    svc = start_service(tmp_path_factory.mktemp("serve"), profiles)
    yield svc
    stop_service(svc.process)


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory, profiles: Path) -> Iterator[Service]:
    """`targeting serve --auth keys.yaml` with an advertiser key (acme-auto) and an ad-server key."""
    tmp = tmp_path_factory.mktemp("serve-auth")
    keys = tmp / "keys.yaml"
    keys.write_text(
        f"- {{key: {ADVERTISER_KEY}, role: 'advertiser:acme-auto'}}\n"
        f"- {{key: {AD_SERVER_KEY}, role: ad_server}}\n"
    )
    svc = start_service(tmp, profiles, "--auth", str(keys))
    yield svc
    stop_service(svc.process)


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright; never `playwright install`)")
    with sync_playwright() as p:
        yield p


@pytest.fixture
def page(playwright_driver: Any, tmp_path: Path) -> Iterator[Any]:
    """A page in a fresh Chromium profile; JavaScript errors fail the test."""
    binary = chromium_binary()
    if binary is None:
        missing("chromium is not installed (apt-get install -y chromium)")
    context = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=binary,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1440, "height": 1000},
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        permissions=["clipboard-read", "clipboard-write"],
    )
    pg = context.pages[0] if context.pages else context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"

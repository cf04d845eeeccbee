"""/docs and /ui in real headless Chromium (Debian's package), on both frontends of both servers.

Screenshots go to build/screenshots/. Locally, without Debian's chromium, these tests skip and
say so; under CI (CI=true) a missing browser is a failure: .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import MOUNTED, dualserve_command, running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXAMPLES = Path(__file__).parent.parent / "examples" / "pipeline_wrappers"
SCREENSHOTS = Path(__file__).parent.parent / "build" / "screenshots"
# No network beyond loopback here: keep Chromium from calling home.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    command, port = dualserve_command(EXAMPLES, request.param)
    with running(command, port) as started:
        yield request.param, started.url


@pytest.fixture(params=["root", "mounted"])
def base(request: pytest.FixtureRequest, server: tuple[str, str]) -> tuple[str, str]:
    name, url = server
    mounted = request.param == "mounted"
    return f"{name}-{request.param}", url + (MOUNTED[name] if mounted else "")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_playground_runs_an_image_pipeline(page: Page, base: tuple[str, str]) -> None:
    label, url = base
    page.goto(f"{url}/ui?pipeline=pillow_image")
    page.fill("#field-prompt", f"hello from {label}")
    page.fill("#field-width", "320")
    page.fill("#field-height", "200")
    page.click("button.run")
    page.wait_for_function(
        "() => { const i = document.getElementById('result-image'); return i && i.complete && i.naturalWidth > 0 }"
    )
    size = page.evaluate(
        "() => { const i = document.getElementById('result-image'); return [i.naturalWidth, i.naturalHeight] }"
    )
    assert size == [320, 200]
    assert "200 · image/png" in page.inner_text("#result .meta")
    assert f"{url}/pillow_image/run" in page.inner_text("#result pre.curl")
    assert page.get_attribute("#result a.download", "download")
    shoot(page, f"ui-{label}")


def test_playground_shows_text_results_inline(page: Page, base: tuple[str, str]) -> None:
    _, url = base
    page.goto(f"{url}/ui?pipeline=file_on_disk")
    page.select_option("#field-name", '"readme.txt"')
    page.click("button.run")
    page.wait_for_selector("#result pre:not(.curl)")
    assert "Range and ETag" in page.inner_text("#result pre:not(.curl)")
    assert page.get_attribute("#result a.download", "download") == "readme.txt"


def test_swagger_ui_shows_an_image_result(page: Page, base: tuple[str, str]) -> None:
    label, url = base
    page.goto(f"{url}/docs")
    operation = page.locator("#operations-pillow_image-pillow_image_get")
    operation.locator(".opblock-summary").click()
    operation.locator("input[placeholder='prompt']").fill(f"docs on {label}")
    operation.locator("button.execute").click()
    image = operation.locator(".responses-wrapper img")
    image.wait_for()
    image.scroll_into_view_if_needed()
    page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("(el) => el.naturalWidth") == 512
    shoot(page, f"docs-{label}")

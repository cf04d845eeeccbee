"""/docs and /ui in real headless Chromium (Debian's package), on both frontends of both servers.

Screenshots go to build/screenshots/. Locally, without Debian's chromium, these tests skip and
say so; under CI (CI=true) a missing browser is a failure: .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.servers import MOUNTED, dualserve_command, running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXAMPLES = Path(__file__).parent.parent / "examples" / "pipeline_wrappers"
# A job that reports its progress, 20 steps over `seconds`: the playground's progress bar.
SLOW_JOB = Path(__file__).parent / "pipelines" / "slow_job"
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

from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def serve_dir(pipelines_dir: Path, server: str, state: Path, *extra: str) -> Iterator[tuple[str, str]]:
    # The jobs of a test's server live in a state directory of its own, not in the working directory.
    command, port = dualserve_command(pipelines_dir, server, "--state-dir", str(state), *extra)
    with running(command, port) as started:
        yield server, started.url


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from serve_dir(EXAMPLES, request.param, tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def job_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from serve_dir(SLOW_JOB, request.param, tmp_path_factory.mktemp("state"))


# One server with a key, for the playground's and Swagger UI's key tests: both frontends, one start.
API_KEY = "ui-test-key-3f9c2a"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from serve_dir(EXAMPLES, "uvicorn", tmp_path_factory.mktemp("state"), "--api-key", API_KEY)


def at(label: str, server: tuple[str, str]) -> tuple[str, str]:
    name, url = server
    return f"{name}-{label}", url + (MOUNTED[name] if label == "mounted" else "")


@pytest.fixture(params=["root", "mounted"])
def base(request: pytest.FixtureRequest, server: tuple[str, str]) -> tuple[str, str]:
    return at(request.param, server)


@pytest.fixture(params=["root", "mounted"])
def job_base(request: pytest.FixtureRequest, job_server: tuple[str, str]) -> tuple[str, str]:
    return at(request.param, job_server)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def violations(page: Page) -> list[str]:
    """What Chromium reports the page's Content-Security-Policy refused (inline scripts or styles, say)."""
    refused: list[str] = []

    def listen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", listen)
    return refused


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
    # An open server's playground asks for no key, and its curl sends none.
    assert page.locator("#auth").is_hidden()
    assert "X-API-Key" not in page.inner_text("#result")
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


def run_pdf_report(page: Page, lines: str) -> tuple[object, bytes]:
    """Run pdf_report with ``lines`` in its list field: the JSON body sent and the PDF answered."""
    # Playwright gives no body for an attachment the page fetched: pass the exchange through a route.
    exchange: dict[str, Any] = {}

    def relay(route: Route) -> None:
        response = route.fetch()
        exchange.update(sent=route.request.post_data_json, status=response.status, body=response.body())
        route.fulfill(response=response)

    page.route("**/pdf_report/run", relay)
    page.fill("#field-lines", lines)
    page.click("button.run")
    page.wait_for_selector("#result pre.curl")
    page.unroute("**/pdf_report/run", relay)
    assert exchange["status"] == 200
    return exchange["sent"], exchange["body"]


def test_playground_sends_a_list_one_item_per_line(page: Page, base: tuple[str, str], violations: list[str]) -> None:
    _, url = base
    page.goto(f"{url}/ui?pipeline=pdf_report")
    lines = page.locator("#field-lines")
    # A list[str] is a plain textarea, one item per line: no JSON, no `null` to delete first.
    assert lines.evaluate("(el) => el.tagName") == "TEXTAREA"
    assert lines.input_value() == ""
    assert lines.get_attribute("placeholder") == "one item per line"

    sent, pdf = run_pdf_report(page, "first page\nsecond page\n\nthird page\n")
    assert sent == {"title": "Report", "lines": ["first page", "second page", "third page"], "download": True}
    assert re.findall(rb"/Count (\d+)", pdf) == [b"3"]  # run_api got three lines: one page each

    # An empty list field sends nothing, so the default (None: one page) applies.
    sent, pdf = run_pdf_report(page, "")
    assert sent == {"title": "Report", "download": True}
    assert re.findall(rb"/Count (\d+)", pdf) == [b"1"]
    page.wait_for_selector("#result pre.curl")
    assert violations == []


def test_playground_types_list_items_by_their_schema(page: Page, base: tuple[str, str]) -> None:
    # No example has a list of numbers: the page's own reader of a list field, per item type.
    _, url = base
    page.goto(f"{url}/ui")
    page.wait_for_selector("#pipelines button")
    read = "([text, item]) => { try { return listItems(text, item) } catch (e) { return e.message } }"
    integer = {"kind": "number", "integer": True}
    assert page.evaluate(read, ["1\n -2 \r\n\n30", integer]) == [1, -2, 30]
    assert page.evaluate(read, ["0.5\n1e3", {"kind": "number", "integer": False}]) == [0.5, 1000]
    assert page.evaluate(read, ["1\n1.5", integer]) == 'item 2 ("1.5") is not an integer'
    assert page.evaluate(read, ["true\nFalse", {"kind": "boolean"}]) == [True, False]
    assert page.evaluate(read, ["2\n1", {"kind": "enum", "values": [1, 2]}]) == [2, 1]
    assert page.evaluate(read, ["  a b \n", {"kind": "string"}]) == ["  a b "]


@pytest.mark.parametrize(
    ("pipeline", "extension"),
    [("pillow_image", "png"), ("pdf_report", "pdf"), ("several_images", "zip"), ("file_on_disk", "png")],
)
def test_playground_curl_names_the_file_by_its_type(
    page: Page, base: tuple[str, str], pipeline: str, extension: str, violations: list[str]
) -> None:
    _, url = base
    page.goto(f"{url}/ui?pipeline={pipeline}")
    page.click("button.run")
    page.wait_for_selector("#result pre.curl")
    curl = page.inner_text("#result pre.curl")
    assert curl.startswith(f"curl -X POST '{url}/{pipeline}/run'")
    assert curl.endswith(f" -o result.{extension}")
    assert str(page.get_attribute("#result a.download", "download")).endswith(f".{extension}")
    assert violations == []


def test_playground_shows_several_images_as_a_gallery(page: Page, base: tuple[str, str], violations: list[str]) -> None:
    label, url = base
    page.goto(f"{url}/ui?pipeline=several_images")
    page.fill("#field-count", "4")
    page.fill("#field-size", "64")
    page.click("button.run")
    page.wait_for_function(
        "() => { const images = [...document.querySelectorAll('#result .gallery img')];"
        " return images.length === 4 && images.every((i) => i.complete && i.naturalWidth > 0) }"
    )
    sizes = page.eval_on_selector_all(
        "#result .gallery img", "(images) => images.map((i) => [i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [[64, 64]] * 4
    captions = page.locator("#result .gallery figcaption").all_inner_texts()
    assert captions == [f"image_{index}.png" for index in range(4)]
    whole = page.locator("#result a.download")
    assert whole.get_attribute("download") == "several_images.zip"
    assert str(whole.get_attribute("href")).startswith("blob:")
    assert page.inner_text("#result pre.curl").endswith(" -o result.zip")
    assert violations == []
    shoot(page, f"ui-gallery-{label}")


# --- Jobs (issue 15) ---------------------------------------------------------------------------------

# The progress bar's value; null while it is indeterminate (no fraction reported) or gone.
PROGRESS = (
    "() => { const bar = document.getElementById('job-progress');"
    " return bar && bar.hasAttribute('value') ? bar.value : null }"
)


def job_status(page: Page) -> str:
    return page.inner_text("#result .job-status")


def submit_job(page: Page, url: str, pipeline: str, **fields: str) -> None:
    page.goto(f"{url}/ui?pipeline={pipeline}")
    page.check("#as-job")
    assert page.inner_text("button.run") == "Submit job"
    for key, value in fields.items():
        page.fill(f"#field-{key}", value)
    page.click("button.run")
    page.wait_for_selector("#result .job-status")


def test_playground_follows_a_jobs_progress_to_its_result(
    page: Page, job_base: tuple[str, str], violations: list[str]
) -> None:
    label, url = job_base
    submit_job(page, url, "slow_job", seconds="3", label=f"job on {label}")
    # The bar advances as the pipeline reports (0.05 a step), and says what the pipeline said.
    page.wait_for_function(f"() => ({PROGRESS})() >= 0.1")
    first = page.evaluate(PROGRESS)
    assert re.fullmatch(rf"job on {label}: step \d+ of 20", page.inner_text("#result .job-message"))
    assert "running" in job_status(page)
    page.wait_for_function(f"(first) => ({PROGRESS})() >= first + 0.2", arg=first)
    later = page.evaluate(PROGRESS)
    assert 0 < first < later < 1
    assert page.inner_text("#result .job-percent") == f"{round(later * 100)}%"
    shoot(page, f"ui-job-{label}")
    # Succeeded: the result, fetched from its result_url, shown as a /run result is.
    page.wait_for_selector("#result pre:not(.curl)")
    assert "succeeded" in job_status(page)
    assert page.inner_text("#result pre:not(.curl)") == f'"job on {label} done"'
    assert page.inner_text("#result .meta").startswith("200 · application/json · ")
    assert page.locator("#job-progress").count() == 0
    assert page.get_attribute("#result a.download", "download")
    # The curl is the submission's.
    curl = page.inner_text("#result pre.curl")
    assert curl == (
        f"curl -X POST '{url}/slow_job/jobs' -H 'Content-Type: application/json'"
        f""" -d '{{"seconds":3,"label":"job on {label}"}}'"""
    )
    assert violations == []


def test_playground_cancels_a_job(page: Page, job_base: tuple[str, str], violations: list[str]) -> None:
    _, url = job_base
    submit_job(page, url, "slow_job", seconds="40")
    page.wait_for_function(f"() => ({PROGRESS})() !== null")
    job_id = job_status(page).split()[1]
    page.click("#result button.cancel")
    page.wait_for_function("() => document.querySelector('#result .job-status').textContent.endsWith('canceled')")
    assert page.inner_text("#result .job .meta") == "The job was canceled."
    assert page.locator("#result button.cancel").count() == 0
    assert httpx2.get(f"{url}/jobs/{job_id}").status_code == 404  # canceled is deleted
    assert violations == []


def test_playground_shows_a_jobs_image_as_a_run_would(page: Page, base: tuple[str, str], violations: list[str]) -> None:
    label, url = base
    submit_job(page, url, "pillow_image", prompt=f"a job on {label}", width="320", height="200")
    page.wait_for_function(
        "() => { const i = document.getElementById('result-image'); return i && i.complete && i.naturalWidth > 0 }"
    )
    size = page.evaluate(
        "() => { const i = document.getElementById('result-image'); return [i.naturalWidth, i.naturalHeight] }"
    )
    assert size == [320, 200]
    assert "succeeded" in job_status(page)
    assert "200 · image/png" in page.inner_text("#result .meta")
    assert page.inner_text("#result pre.curl").startswith(f"curl -X POST '{url}/pillow_image/jobs'")
    assert page.get_attribute("#result a.download", "download")
    # Unchecked, the next run is a plain /run again.
    page.uncheck("#as-job")
    page.click("button.run")
    page.wait_for_function(
        "() => !document.querySelector('#result .job-status') && document.querySelector('#result pre.curl')"
    )
    assert page.inner_text("#result pre.curl").startswith(f"curl -X POST '{url}/pillow_image/run'")
    assert violations == []


def test_playground_shows_why_a_job_was_refused(page: Page, base: tuple[str, str]) -> None:
    _, url = base
    page.goto(f"{url}/ui?pipeline=pillow_image")
    page.check("#as-job")
    page.fill("#field-prompt", "x")
    page.fill("#field-width", "1")  # under the pipeline's bound: a 422, no job
    page.click("button.run")
    page.wait_for_selector("#result pre.error")
    assert page.inner_text("#result .meta").startswith("422 · application/json")
    assert "width" in page.inner_text("#result pre.error")


def test_swagger_ui_submits_a_job_and_reads_it(page: Page, base: tuple[str, str]) -> None:
    label, url = base
    page.goto(f"{url}/docs")
    submit = page.locator("#operations-pillow_image-pillow_image_submit")
    submit.locator(".opblock-summary").click()
    submit.locator("textarea.body-param__text").fill('{"prompt": "a job from the docs", "width": 64, "height": 32}')
    submit.locator("button.execute").click()
    answer = submit.locator(".live-responses-table .response")
    answer.wait_for()
    assert answer.locator(".response-col_status").inner_text().strip() == "202"
    job = json.loads(answer.locator(".response-col_description pre").first.inner_text())
    assert job["pipeline"] == "pillow_image"

    status = page.locator("#operations-jobs-job_get")
    status.locator(".opblock-summary").click()
    status.locator("input[placeholder='job']").fill(job["id"])
    status.locator("button.execute").click()
    read = status.locator(".live-responses-table .response")
    read.wait_for()
    assert read.locator(".response-col_status").inner_text().strip() == "200"
    assert json.loads(read.locator(".response-col_description pre").first.inner_text())["id"] == job["id"]
    # The other job operations are listed under the jobs tag.
    for operation in ("job_delete", "job_result", "job_events"):
        assert page.locator(f"#operations-jobs-{operation}").count() == 1
    shoot(page, f"docs-job-{label}")


# --- API keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["root", "mounted"])
def test_playground_sends_the_api_key(
    page: Page, keyed_server: tuple[str, str], label: str, violations: list[str]
) -> None:
    name, url = at(label, keyed_server)
    page.goto(f"{url}/ui?pipeline=pillow_image")
    key = page.locator("#api-key")
    key.wait_for()  # shown: the document declares securitySchemes
    assert key.get_attribute("type") == "password"
    assert key.get_attribute("autocomplete") == "off"
    assert key.input_value() == ""
    # Without the key: the 401's detail, and the key field to fill.
    page.fill("#field-width", "64")
    page.fill("#field-height", "48")
    page.click("button.run")
    page.wait_for_selector("#result pre.error")
    assert page.inner_text("#result .meta").startswith("401 · application/json")
    assert "needs an API key" in page.inner_text("#result pre.error")
    assert page.evaluate("() => document.activeElement.id") == "api-key"
    # With it: the result, and a curl that names the variable, never the key.
    key.fill(API_KEY)
    page.click("button.run")
    page.wait_for_function(
        "() => { const i = document.getElementById('result-image'); return i && i.complete && i.naturalWidth > 0 }"
    )
    assert "200 · image/png" in page.inner_text("#result .meta")
    curl = page.inner_text("#result pre.curl")
    assert curl.startswith(f"""curl -X POST '{url}/pillow_image/run' -H "X-API-Key: $DUALSERVE_API_KEY" """)
    assert API_KEY not in page.inner_text("#result")
    assert "$DUALSERVE_API_KEY holds your API key" in page.inner_text("#result .curl-note")
    shoot(page, f"ui-keyed-{name}")
    # Kept for the tab (a reload keeps it), never in localStorage; a job follows its events with it.
    assert page.evaluate("() => [sessionStorage.getItem('dualserve.api-key'), localStorage.length]") == [API_KEY, 0]
    with page.expect_response("**/events") as events:
        submit_job(page, url, "pillow_image", width="64", height="48")
    assert events.value.status == 200
    assert events.value.request.header_value("x-api-key") == API_KEY
    assert page.locator("#api-key").input_value() == API_KEY
    page.wait_for_selector("#result-image")
    assert "succeeded" in job_status(page)
    assert page.inner_text("#result pre.curl").startswith(
        f"""curl -X POST '{url}/pillow_image/jobs' -H "X-API-Key: $DUALSERVE_API_KEY" """
    )
    assert violations == []


def test_playground_reads_server_sent_events(page: Page, keyed_server: tuple[str, str]) -> None:
    # EventSource cannot send a key: the page reads a job's events with fetch and its own parser.
    _, url = keyed_server
    page.goto(f"{url}/ui")
    page.wait_for_selector("#pipelines button")
    read = """async (chunks) => {
        const encoder = new TextEncoder();
        const body = new ReadableStream({ start(controller) {
            for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
            controller.close();
        } });
        const events = [];
        await readEvents(body, (event) => events.push(event));
        return events;
    }"""
    chunks = [
        "id: 1\r",
        '\nevent: running\r\ndata: {"a"',
        ":1}\n\n: keep-alive\n\nretry: 500\n\n",
        "data: x\rdata:y\r\r",
    ]
    assert page.evaluate(read, chunks) == [
        {"type": "running", "data": '{"a":1}', "id": "1", "retry": None},
        {"type": None, "data": "", "id": None, "retry": 500},
        {"type": "message", "data": "x\ny", "id": None, "retry": None},
    ]
    # An event cut off before its blank line is not dispatched.
    assert page.evaluate(read, ["event: succeeded\ndata: {}\n"]) == []


def test_swagger_ui_offers_authorize_on_a_keyed_server(page: Page, keyed_server: tuple[str, str]) -> None:
    _, url = keyed_server
    page.goto(f"{url}/docs")
    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.wait_for()
    # Both ways the server takes a key: the document's securitySchemes.
    assert sorted(text.split()[0] for text in dialog.locator("h4").all_inner_texts()) == ["apiKey", "bearer"]

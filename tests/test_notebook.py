"""``xaiboard.notebook``: the dashboard framed in a notebook's output, and the report file inline.

The notebook's server must answer the iframe with the dashboard and let a notebook page frame it (the plain
dashboard refuses), stay on the loopback address, and be reused by later calls; the inline report must be the
report file, drawn inside a sandboxed frame. Chromium checks what a notebook's output cell would show.
"""

from __future__ import annotations

import html
import http.server
import json
import re
import threading
import urllib.error
import urllib.request

import pytest

from test_server_registry import write_summary
from xaiboard import notebook
from xaiboard.server.app import create_app



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A base directory with two summaries."""
    root = tmp_path_factory.mktemp("runs")
    first, _ = write_summary(root / "first", 6, ["Gradient", "GradCAM"], uncertainty=False, seed=0)
    write_summary(root / "second", 3, ["Gradient"], uncertainty=False, seed=1)
    yield root, first
    notebook.stop()


def iframe(markup: str) -> dict[str, str]:
    found = re.fullmatch(r"<iframe (.*)></iframe>", markup, re.S)
    assert found, markup[:200]
    return {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', found[1])}


def fetch(url: str, host: str | None = None):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        response = urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()
    return response.status, response.headers, response.read().decode()


def test_show_frames_the_summarys_browser_from_a_loopback_server_that_allows_framing(runs):
    root, first = runs
    frame = iframe(notebook.show(first.directory, height=640)._repr_html_())
    assert frame["height"] == "640" and frame["src"].startswith("http://127.0.0.1:")
    status, headers, body = fetch(frame["src"])
    assert status == 200 and headers.get_content_type() == "text/html"
    assert re.search(r"<h1>\s*first\s*</h1>", body) and 'data-page="browser"' in body
    assert headers.get("X-Frame-Options") is None
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' http://localhost:* http://127.0.0.1:*" in policy and "'none'" not in policy.split(
        "frame-ancestors")[1]
    assert "script-src 'self'" in policy and headers["X-Content-Type-Options"] == "nosniff"  # the rest as it was
    base = frame["src"].split("/s/")[0]
    status, _, body = fetch(base + "/api/v1/summaries")
    assert status == 200 and [s["name"] for s in json.loads(body)["summaries"]] == ["first"]
    status, _, _ = fetch(frame["src"], host="attacker.example")  # a rebound DNS name is refused
    assert status == 400


def test_show_again_reuses_the_server_and_a_folder_opens_on_its_list(runs):
    root, first = runs
    once = notebook.show(first.directory)
    again = notebook.show(str(first.directory) + "/")
    assert once.url == again.url
    listing = notebook.show(root)
    assert listing.url.endswith("/") and listing.url.split("/")[2] != once.url.split("/")[2]
    assert notebook.servers() == {str(first.directory.resolve()): once.url.split("/s/")[0],
                                  str(root.resolve()): listing.url.rstrip("/")}
    status, _, body = fetch(listing.url + "api/v1/summaries")
    assert status == 200 and [s["name"] for s in json.loads(body)["summaries"]] == ["first", "second"]


def test_the_plain_dashboard_still_refuses_to_be_framed(runs):
    root, _ = runs
    app = create_app(root, reload_interval=0)
    try:
        response = app.test_client().get("/")
    finally:
        app.extensions["xaiboard.registry"].close()
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_stop_ends_the_servers_and_show_starts_a_new_one(tmp_path):
    written, _ = write_summary(tmp_path / "alone", 2, ["Gradient"], uncertainty=False, seed=2)
    url = notebook.show(written.directory).url
    assert fetch(url)[0] == 200
    notebook.stop()
    with pytest.raises(OSError):  # refused (or reset): nothing listens there any more
        urllib.request.urlopen(url, timeout=5)
    assert notebook.servers() == {}
    assert fetch(notebook.show(written.directory).url)[0] == 200
    notebook.stop()


def test_report_holds_the_report_file_in_a_sandboxed_frame(runs):
    _, first = runs
    inline = notebook.report(first.directory, samples=2, height=500)
    frame = iframe(inline._repr_html_())
    assert frame["sandbox"] == "allow-scripts" and frame["height"] == "500"  # no same-origin: apart from the notebook
    assert frame["srcdoc"] == inline.html
    assert inline.html.count('<article class="sample-card') == 2 and "default-src &#39;none&#39;" in inline.html


# -- in Chromium: a notebook page with the outputs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    browser_tests = pytest.importorskip("test_browser", reason="playwright or chromium is missing")
    with browser_tests.chromium_context(1280, 1000) as context:
        yield browser_tests, context


@pytest.fixture(scope="module")
def jupyter():
    """A stand-in for Jupyter's server on a loopback port: it serves one notebook page whose output cell holds
    the HTML put in ``outputs[0]`` (a real local server: Chromium lets only local pages frame local addresses)."""
    outputs = [""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"<!doctype html><meta charset='utf-8'><title>notebook</title><div class='output'>{outputs[0]}</div>"
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield outputs, f"http://localhost:{server.server_port}/notebooks/analysis.ipynb"
    server.shutdown()
    server.server_close()


def notebook_page(browser_tests, context, jupyter, output: str):
    """A notebook page at Jupyter's address whose only content is one output cell's HTML."""
    outputs, address = jupyter
    outputs[0] = output
    page = browser_tests.new_page(context)
    page.goto(address)
    return page


@pytest.mark.browser
def test_a_notebook_page_shows_the_framed_dashboard_and_the_plain_one_stays_blank(runs, chromium, jupyter):
    browser_tests, context = chromium
    _, first = runs
    page = notebook_page(browser_tests, context, jupyter, notebook.show(first.directory, height=700)._repr_html_())
    frame = page.frame_locator("iframe")
    frame.locator("tr.sample-row").first.wait_for()
    assert frame.locator("h1").first.inner_text() == "first"
    assert frame.locator("tr.sample-row").count() == 6
    dashboard = next(f for f in page.frames if f.url.startswith("http://127.0.0.1:"))
    dashboard.wait_for_function(browser_tests.IMAGES_LOADED)  # its images come from the same server
    browser_tests.close_page(page)

    plain = browser_tests.start_server(runs[0])  # the dashboard of ``xaiboard serve``
    try:
        blocked = notebook_page(browser_tests, context, jupyter,
                                f'<iframe src="{plain[1]}/" width="800" height="400"></iframe>')
        for _ in range(100):  # until the frame asked the plain server, and a moment to show its answer
            if any(url.startswith(plain[1]) for url in blocked.requested):
                break
            blocked.wait_for_timeout(100)
        blocked.wait_for_timeout(500)
        assert any(url.startswith(plain[1]) for url in blocked.requested)
        child = blocked.frames[1]
        assert child.url.startswith("chrome-error:") and "Summaries" not in child.content()
        blocked.close()
    finally:
        browser_tests.stop_server(plain[0])


@pytest.mark.browser
def test_the_inline_report_draws_its_charts_inside_the_notebook(runs, chromium, jupyter, tmp_path):
    browser_tests, context = chromium
    _, first = runs
    page = notebook_page(browser_tests, context, jupyter, notebook.report(first.directory, samples=3)._repr_html_())
    frame = page.frame_locator("iframe")
    frame.locator("[data-drawn]").first.wait_for()
    assert frame.locator("article.sample-card").count() == 3
    assert frame.locator(".js-plotly-plot svg.main-svg").count() > 0
    page.screenshot(path=str(tmp_path / "inline-report.png"))
    outside = [u for u in page.requested if u != jupyter[1] and not u.startswith(("data:", "about:"))]
    assert outside == []
    browser_tests.close_page(page)


# -- a real kernel -------------------------------------------------------------------------------------------------


def test_a_two_cell_notebook_shows_the_dashboard(runs):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (it is in the test extra)")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (it is in the test extra)")
    import nbformat

    _, first = runs
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"from xaiboard.notebook import show\nview = show({str(first.directory)!r}, height=600)"),
        nbformat.v4.new_code_cell("view"),
    ])
    client = nbclient.NotebookClient(book, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(book.cells[0], 0)
        client.execute_cell(book.cells[1], 1)
        output = book.cells[1].outputs[0]["data"]["text/html"]
        frame = iframe(output)
        assert frame["height"] == "600"
        status, headers, body = fetch(frame["src"])  # served by the kernel, while it runs
        assert status == 200 and "X-Frame-Options" not in headers and re.search(r"<h1>\s*first\s*</h1>", body)
    with pytest.raises(urllib.error.URLError) as refused:  # the kernel has shut down: its server went with it
        urllib.request.urlopen(frame["src"], timeout=10)
    assert isinstance(refused.value.reason, ConnectionRefusedError)

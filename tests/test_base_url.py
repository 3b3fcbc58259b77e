"""The dashboard under a path prefix (``--base-url /xai/``), as a reverse proxy that forwards ``/xai/...`` unchanged
sees it: every link of every page, every URL in the API's JSON and every address the JS builds starts with the
prefix, nothing answers outside it, and in Chromium the pages, the API calls and the images stay below it."""

from __future__ import annotations

import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from test_auth import TOKEN, cookie_of, root, route_urls, served, summary  # noqa: F401 (fixtures)
from xaiboard.server import create_app
from xaiboard.server.serving import make_server, shutdown
from xaiboard.server.urls import BaseUrlError, normalize_base_url

PREFIX = "/xai"
JS = Path(__file__).resolve().parent.parent / "frontend" / "static" / "js"


class Links(HTMLParser):
    """Every address in a page: href, src and action attributes, and the addresses its meta tags name."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("href", "src", "action"):
            if values.get(name) is not None:
                self.found.append(values[name])
        if tag == "meta" and values.get("name") in ("xaiboard-root", "plotly-src"):
            self.found.append(values["content"])


def links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.found


def json_urls(value, key: str = "") -> list[str]:
    """The URLs inside an API answer: values of ``*url``/``*urls`` keys and any string naming the API."""
    if isinstance(value, dict):
        return [url for k, v in value.items() for url in json_urls(v, k)]
    if isinstance(value, list):
        return [url for item in value for url in json_urls(item, key)]
    if isinstance(value, str) and (key.endswith(("url", "urls")) or "/api/v1" in value):
        return [value]
    return []


@pytest.fixture(scope="module")
def app(root):
    app = create_app(root, reload_interval=0, base_url="/xai/")
    yield app
    app.extensions["xaiboard.registry"].close()


@pytest.fixture(scope="module")
def urls(app, summary) -> dict[str, str]:
    return {endpoint: PREFIX + url for endpoint, url in route_urls(app, summary, label=0).items()}


@pytest.mark.parametrize("given,expected", [("/xai/", "/xai"), ("xai", "/xai"), ("/xai", "/xai"), ("/", ""),
                                            ("", ""), (None, ""), ("/team/xai//", "/team/xai")])
def test_base_url_is_normalised(given, expected):
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("given", ["/a/../b", "/./x", "/x?y=1", "/x#y", "/a b", "http://host/xai/", "/x\\y"])
def test_a_base_url_that_is_not_a_plain_path_is_refused(given):
    with pytest.raises(BaseUrlError):
        normalize_base_url(given)


def test_nothing_answers_outside_the_prefix(app, summary):
    client = app.test_client()
    for path in ("/", "/api/v1/summaries", f"/s/{summary}", "/static/css/app.css", "/xaiother/", "/xa"):
        response = client.get(path)
        assert response.status_code == 404 and "/xai/" in response.get_data(as_text=True), path
    response = client.get("/xai?q=1")
    assert response.status_code == 308 and response.headers["Location"] == "/xai/?q=1"


def test_every_link_of_every_page_starts_with_the_prefix(app, urls):
    client = app.test_client()
    pages = [url for url in urls.values() if "/api/" not in url]
    pages.append(f"{PREFIX}/s/no-such-summary")  # the error page
    checked = 0
    for url in pages:
        response = client.get(url)
        if response.mimetype != "text/html":
            continue
        found = links(response.get_data(as_text=True))
        assert found, url
        outside = [link for link in found if not link.startswith(PREFIX + "/")]
        assert outside == [], (url, outside)
        for link in found:
            if "/static/" in link or "/vendor/" in link:
                assert client.get(link).status_code == 200, link
        checked += 1
    assert checked >= 5  # the list, browser, evaluation, compare and error pages


def test_every_url_in_the_api_json_starts_with_the_prefix(app, urls):
    client = app.test_client()
    found = []
    for url in urls.values():
        response = client.get(url)
        if response.mimetype == "application/json" and response.status_code == 200:
            found += json_urls(response.get_json())
    assert len(found) > 20  # images and maps of the samples, the API's own index
    outside = sorted({url for url in found if not url.startswith(PREFIX + "/")})
    assert outside == []
    images = [url for url in found if ("/images/" in url or "/saliency/" in url) and "<" not in url]
    assert images and all(client.get(url).status_code == 200 for url in images[:4])


def test_the_javascript_builds_no_address_outside_the_root():
    """Addresses in the ES modules go through util.js' ``url()``; a literal such as "/api/v1" would leave the
    prefix."""
    hard_coded = []
    for path in sorted(JS.glob("*.js")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//")[0] if not line.lstrip().startswith(("*", "/*")) else ""
            if re.search(r"[`\"']/[A-Za-z]", code):
                hard_coded.append(f"{path.name}:{number}: {line.strip()}")
    assert hard_coded == []


def test_authentication_under_the_prefix(root, summary):
    app = create_app(root, reload_interval=0, base_url="/xai/", token=TOKEN)
    client = app.test_client()
    try:
        asked = client.get(f"/xai/s/{summary}?labels=1")
        location = urlsplit(asked.headers["Location"])
        assert asked.status_code == 303 and location.path == "/xai/login"
        assert parse_qs(location.query)["next"] == [f"/xai/s/{summary}?labels=1"]
        login = client.get(asked.headers["Location"]).get_data(as_text=True)
        assert all(link.startswith("/xai/") for link in links(login))
        for target in ("/", "/compare", "//xai/", "https://evil.example/xai/"):  # outside the prefix: its root
            assert client.post("/xai/login", data={"token": TOKEN, "next": target}).headers["Location"] == "/xai/"
        response = client.get(f"/xai/compare?token={TOKEN}")
        assert response.headers["Location"] == "/xai/compare"
        assert next(iter(cookie_of(response).values()))["path"] == "/xai/"
        assert client.get("/xai/compare").status_code == 200
        bearer = app.test_client()
        assert bearer.get("/xai/api/v1/summaries", headers={"Authorization": "Bearer x"}).status_code == 401
        assert bearer.get("/xai/api/v1/summaries", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        app.extensions["xaiboard.registry"].close()


def test_a_token_link_to_the_bare_prefix_keeps_the_token_out_of_every_header(root):
    app = create_app(root, reload_interval=0, base_url="/xai/", token=TOKEN)
    client = app.test_client()
    try:
        assert client.get("/xai").headers["Location"] == "/xai/", "the bare prefix redirects to its root"
        response = client.get(f"/xai?token={TOKEN}")
        assert response.headers["Location"] == "/xai/" and cookie_of(response)
        assert TOKEN not in str(response.headers) and TOKEN not in response.get_data(as_text=True)
        assert client.get("/xai/").status_code == 200, "logged in by the link"
    finally:
        app.extensions["xaiboard.registry"].close()


@pytest.mark.parametrize("option", ["--base-url", "--path-prefix"])
def test_the_command_serves_under_the_prefix(served, option):
    result, app = served(option, "/xai/")
    assert result.exit_code == 0 and "dashboard at http://localhost:4321/xai/ " in result.stderr, result.output
    assert app.test_client().get("/xai/api/v1/summaries").status_code == 200
    assert app.test_client().get("/api/v1/summaries").status_code == 404


# -- in Chromium ---------------------------------------------------------------------------------------------------


@pytest.fixture
def prefixed_server(root):
    """The real waitress server under /xai/ with a token, on a free port; yields its address with the prefix."""
    server = make_server(root, host="127.0.0.1", port=0, reload_interval=1.0, base_url="/xai/", token=TOKEN)
    thread = threading.Thread(target=server.run, name="xaiboard-prefix-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}{PREFIX}"
    shutdown(server)
    thread.join(timeout=10)


@pytest.fixture
def chromium():
    """A browser profile of its own (no cookie yet); skips where Playwright or Chromium is missing."""
    import test_browser as tb  # skips this test, not the module, without Chromium

    with tb.chromium_context(1280, 860) as context:
        yield tb, context


@pytest.mark.browser
def test_the_dashboard_behind_a_prefix_in_chromium(prefixed_server, chromium, summary):
    tb, context = chromium
    address = prefixed_server
    page = tb.new_page(context)
    # a link asks for a view: the login page (styled: its stylesheet loads without the token), then that view
    page.goto(f"{address}/s/{summary}?labels=1")
    assert urlsplit(page.url).path == f"{PREFIX}/login"
    assert page.evaluate("() => getComputedStyle(document.querySelector('.topbar')).position") == "sticky"
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{address}/s/{summary}?labels=1")
    page.wait_for_selector("tr.sample-row")
    page.wait_for_function(tb.IMAGES_LOADED)
    # the summary list, then the browser page again through its link, then the evaluation page with plotly
    page.click("nav.topnav a:has-text('Summaries')")
    page.wait_for_url(f"{address}/")
    page.click(f"a.name[href='{PREFIX}/s/{summary}']")
    page.wait_for_url(f"{address}/s/{summary}")
    page.wait_for_function(tb.IMAGES_LOADED)
    page.click("nav.tabs a:has-text('Evaluation')")
    page.wait_for_url(f"{address}/s/{summary}/scores")
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some((n) => n._fullData)",
                           timeout=60_000)
    tb.close_page(page)
    requested = page.requested
    assert requested and [url for url in requested if not url.startswith(address + "/")] == []
    assert any("/api/v1/summaries/" in url and "/images/" in url for url in requested)

    # a link with the token logs a fresh profile in and leaves the address without it
    fresh = context.browser.new_context()
    try:
        page = tb.new_page(fresh)
        page.goto(f"{address}/compare?token={TOKEN}")
        assert page.url == f"{address}/compare"
        assert page.evaluate("() => document.cookie") == ""  # HttpOnly: the page's script cannot read it
        page.goto(f"{address}/")
        page.wait_for_selector(f"a.name[href='{PREFIX}/s/{summary}']")
        tb.close_page(page)
        assert all(url.startswith(address + "/") for url in page.requested)
    finally:
        fresh.close()

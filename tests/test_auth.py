"""Token authentication: every page and API route refuses a request without the token and answers with it (cookie,
Bearer header or a ``?token=`` link), the token never comes back in a response or a log line, the login page sends
nobody to another site, and the CLI never serves a network address without a token unless told ``--no-auth``."""

from __future__ import annotations

import logging
import re
import threading
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from test_server_registry import write_summary
from xaiboard.server import create_app, figures
from xaiboard.server.auth import OPEN_ENDPOINTS, RedactTokens
from xaiboard.server.cli import main
from xaiboard.server.registry import summary_id
from xaiboard.server.serving import LOOPBACK_NAMES
from xaiboard.server.throttle import LIMIT, WINDOW, Throttle

TOKEN = "correct-horse-battery-staple-0123456789"
EXPLAINERS = ["Gradient", "GradCAM"]

#: a real value for each path parameter of a route (by endpoint first, then by name), so that no route, however
#: new, is left out of these tests: a parameter missing here fails them until it gets a value
PARAMETERS = {
    "api.colormap": {"name": "inferno"},
    "api.figure": {"name": figures.NAMES[0]},
}
VALUES = {"sample_id": 0, "explainer": EXPLAINERS[0], "layer": "features.0", "channel": 0, "index": 0, "head": 0}
QUERIES = {"api.compare": "ids={summary}", "pages.compare": "ids={summary}"}


def route_urls(app, summary: str, label: int) -> dict[str, str]:
    """One URL per GET route of ``app`` but the open ones (static files, login, logout), by endpoint."""
    urls = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OPEN_ENDPOINTS or "GET" not in rule.methods or rule.endpoint in urls:
            continue
        values = {}
        for name in rule.arguments:
            given = {"summary_id": summary, "label_index": label, **VALUES, **PARAMETERS.get(rule.endpoint, {})}
            assert name in given, f"give the parameter {name!r} of {rule.rule} a value in tests/test_auth.py"
            values[name] = given[name]
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **values)
        query = QUERIES.get(rule.endpoint)
        urls[rule.endpoint] = url + (f"?{query.format(summary=summary)}" if query else "")
    return urls


def is_api(url: str) -> bool:
    return "/api/" in url or url.endswith("/api/v1")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    write_summary(root / "run", 6, EXPLAINERS, uncertainty=True, seed=0)
    return root


@pytest.fixture(scope="module")
def summary() -> str:
    return summary_id("run")


@pytest.fixture(scope="module")
def label(root) -> int:
    """A label of sample 0 that has maps."""
    app = create_app(root, reload_interval=0)
    body = app.test_client().get(f"/api/v1/summaries/{summary_id('run')}/samples/0").get_json()
    app.extensions["xaiboard.registry"].close()
    return next(item["index"] for item in body["labels"] if item["saliency"])


@pytest.fixture(scope="module")
def app(root):
    app = create_app(root, reload_interval=0, token=TOKEN)
    yield app
    app.extensions["xaiboard.registry"].close()


@pytest.fixture(autouse=True)
def fresh_throttle(app):
    """Each test starts with no wrong tokens counted (the wrong-token tests would add up across the module)."""
    app.extensions["xaiboard.auth"].throttle.reset()


@pytest.fixture(scope="module")
def open_app(root):
    """The same dashboard without a token: what an authenticated request must get."""
    app = create_app(root, reload_interval=0)
    yield app
    app.extensions["xaiboard.registry"].close()


@pytest.fixture(scope="module")
def urls(app, summary, label) -> dict[str, str]:
    urls = route_urls(app, summary, label)
    assert {"pages.summary_list", "pages.browser", "api.list_summaries", "api.saliency"} <= set(urls)
    return urls


def cookie_of(response) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        cookie.load(header)
    return cookie


def logged_in(app):
    """A client holding the cookie that a ``?token=`` link sets."""
    client = app.test_client()
    response = client.get(f"/?token={TOKEN}")
    assert response.status_code == 303 and cookie_of(response)
    return client


def test_every_route_refuses_a_request_without_the_token(app, urls):
    client = app.test_client()
    for endpoint, url in urls.items():
        response = client.get(url)
        if is_api(url):
            assert response.status_code == 401, (url, response.status_code)
            assert response.get_json()["error"].startswith("authentication required")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 303, (url, response.status_code)
            location = urlsplit(response.headers["Location"])
            assert location.path == "/login" and parse_qs(location.query)["next"] == [url]
        assert response.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("how", ["cookie", "bearer"])
def test_every_route_answers_with_the_token_as_without_authentication(app, open_app, urls, how):
    client = logged_in(app) if how == "cookie" else app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"} if how == "bearer" else {}
    reference = open_app.test_client()
    answered = 0
    for endpoint, url in urls.items():
        response, expected = client.get(url, headers=headers), reference.get(url)
        assert response.status_code == expected.status_code, (url, response.status_code, response.data[:200])
        assert response.mimetype == expected.mimetype, url
        if response.mimetype.startswith("image/"):
            assert response.data == expected.data, url
        answered += response.status_code == 200
    assert answered >= len(urls) - 6  # the summary has no internals and no Integrated Gradients path: 404s


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer ünïcode"}])
def test_a_wrong_token_is_refused(app, urls, headers):
    client = app.test_client()
    assert client.get(urls["api.list_summaries"], headers=headers).status_code == 401
    assert client.get(urls["pages.browser"], headers=headers).status_code == 303


def test_a_forged_cookie_and_a_wrong_link_are_refused(app, urls):
    name = next(iter(cookie_of(logged_in(app).get(f"/?token={TOKEN}"))))
    client = app.test_client()
    client.set_cookie(name, TOKEN)  # the token itself is not the cookie's value
    assert client.get(urls["api.list_summaries"]).status_code == 401
    client = app.test_client()
    response = client.get(f"/?token={TOKEN}x")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login?")
    assert "Set-Cookie" not in response.headers
    assert client.get(urls["api.list_summaries"]).status_code == 401


def test_a_token_link_sets_the_cookie_and_drops_the_token_from_the_address(app, urls, summary):
    client = app.test_client()
    response = client.get(f"/s/{summary}?labels=1&token={TOKEN}&types=TP")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/s/{summary}?labels=1&types=TP"
    morsel = next(iter(cookie_of(response).values()))
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and morsel["path"] == "/" and not morsel["secure"]
    assert client.get(response.headers["Location"]).status_code == 200
    assert client.get(urls["api.list_summaries"]).status_code == 200


@pytest.mark.parametrize("https", [{"base_url": "https://localhost"}, {"headers": {"X-Forwarded-Proto": "https"}}])
def test_the_cookie_is_secure_over_https(app, https):
    response = app.test_client().get(f"/?token={TOKEN}", **https)
    assert next(iter(cookie_of(response).values()))["secure"]


def test_the_token_never_comes_back_in_a_response(app, urls):
    client = logged_in(app)
    responses = [app.test_client().get(f"/?token={TOKEN}"), app.test_client().get(f"/compare?token={TOKEN}&a=1"),
                 app.test_client().post("/login", data={"token": TOKEN, "next": "/"}),
                 app.test_client().post("/login", data={"token": TOKEN + "x"}), client.get("/login"),
                 app.test_client().get(f"/login?next=/%3Ftoken%3D{TOKEN}")]
    for url in urls.values():
        responses += [client.get(url), app.test_client().get(url, headers={"Authorization": f"Bearer {TOKEN}"}),
                      app.test_client().get(url)]
    for response in responses:
        assert TOKEN.encode() not in response.data
        for name, value in response.headers.items():
            assert TOKEN not in value, name


def test_the_host_check_still_holds_with_authentication(root):
    app = create_app(root, reload_interval=0, token=TOKEN, trusted_hosts=list(LOOPBACK_NAMES))
    client = app.test_client()
    try:
        for headers in ({"Host": "rebinding.example"}, {"Host": "rebinding.example",
                                                       "Authorization": f"Bearer {TOKEN}"}):
            for url in ("/api/v1/summaries", "/", f"/?token={TOKEN}"):
                response = client.get(url, headers=headers)
                assert response.status_code == 400, (url, headers)
                assert "Set-Cookie" not in response.headers
        assert client.get("/api/v1/summaries", headers={"Host": "localhost",
                                                        "Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        app.extensions["xaiboard.registry"].close()


def test_static_files_and_the_login_page_need_no_token(app):
    client = app.test_client()
    page = client.get("/login?next=/compare")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<script" not in html and 'method="post"' in html and 'name="token"' in html
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert stylesheets and all(client.get(href).status_code == 200 for href in stylesheets)
    assert client.get("/static/js/util.js").status_code == 200


def test_login_form_sets_the_cookie_and_goes_where_it_was_asked(app, summary):
    client = app.test_client()
    asked = client.get(f"/s/{summary}?labels=2")
    target = parse_qs(urlsplit(asked.headers["Location"]).query)["next"][0]
    assert target == f"/s/{summary}?labels=2"
    wrong = client.post("/login", data={"token": "guess-123", "next": target})
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
    assert "not this dashboard" in wrong.get_data(as_text=True) and "guess-123" not in wrong.get_data(as_text=True)
    right = client.post("/login", data={"token": TOKEN, "next": target})
    assert right.status_code == 303 and right.headers["Location"] == target
    assert client.get(target).status_code == 200
    assert client.get("/login?next=/compare").headers["Location"] == "/compare"  # already logged in


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example",
                                    "/\t/evil.example", "/\n/evil.example", "javascript:alert(1)", "evil.example/",
                                    "http:/evil.example", " //evil.example", ""])
def test_the_login_page_never_redirects_to_another_site(app, target):
    response = app.test_client().post("/login", data={"token": TOKEN, "next": target})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    page = app.test_client().get("/login", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next" value="/"' in page


def test_a_login_posted_from_another_site_is_refused(app):
    response = app.test_client().post("/login", data={"token": TOKEN}, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and "Set-Cookie" not in response.headers


def test_logout_forgets_the_cookie(app, urls):
    client = logged_in(app)
    assert client.get(urls["api.list_summaries"]).status_code == 200
    assert client.post("/logout").headers["Location"] == "/login"
    assert client.get(urls["api.list_summaries"]).status_code == 401


def test_a_logout_posted_from_another_site_is_refused(app, urls):
    client = logged_in(app)
    refused = client.post("/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403 and "Set-Cookie" not in refused.headers
    assert client.get(urls["api.list_summaries"]).status_code == 200, "still logged in"


@pytest.mark.parametrize("query", [f"token={TOKEN}", f"x=1&tok%65n={TOKEN}", f"%74oken={TOKEN}&y=2"])
def test_the_log_filter_redacts_every_spelling_of_the_token_parameter(app, query):
    accepted = app.test_client().get(f"/api/v1/summaries?{query}")
    assert accepted.status_code == 303 and cookie_of(accepted), "the server reads each spelling as the token"
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '"GET %s HTTP/1.1" 200 -',
                               (f"/api/v1/summaries?{query}",), None)
    RedactTokens().filter(record)
    assert TOKEN not in record.getMessage() and "=[redacted]" in record.getMessage()
    other = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, "GET /?tokens=abc&q=token", (), None)
    RedactTokens().filter(other)
    assert other.getMessage() == "GET /?tokens=abc&q=token", "other parameters stay as they are"


def test_pages_show_a_logout_button_only_with_authentication(app, open_app):
    assert 'action="/logout"' in logged_in(app).get("/").get_data(as_text=True)
    assert "logout" not in open_app.test_client().get("/").get_data(as_text=True)


def test_images_that_need_the_token_are_not_cached_by_shared_caches(app, urls):
    client = logged_in(app)
    url = client.get(urls["api.one_sample"]).get_json()["image_url"]
    cache = client.get(url).headers["Cache-Control"]
    assert "private" in cache and "public" not in cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app):
    auth = app.extensions["xaiboard.auth"]
    kept, clock = auth.throttle, Clock()
    auth.throttle = Throttle(clock=clock)
    yield clock
    auth.throttle = kept


def test_wrong_tokens_from_one_address_are_limited_but_the_logged_in_go_on(app, urls, clock):
    guesser = {"REMOTE_ADDR": "10.0.0.5"}
    member = logged_in(app)  # logged in before, from the same address (a shared proxy)
    member.environ_base.update(guesser)
    client = app.test_client()
    client.environ_base.update(guesser)
    for i in range(LIMIT):
        kind = ("form", "bearer", "link")[i % 3]
        if kind == "form":
            assert client.post("/login", data={"token": f"guess-{i}"}).status_code == 401
        elif kind == "bearer":
            assert client.get(urls["api.list_summaries"], headers={"Authorization": f"Bearer guess-{i}"}).status_code == 401
        else:
            assert client.get(f"/?token=guess-{i}").status_code == 303
        clock.now += 1
    # over the limit: even the right token is not checked until the first failure leaves the window
    form = client.post("/login", data={"token": TOKEN, "next": "/compare"})
    assert form.status_code == 429 and "Set-Cookie" not in form.headers
    assert form.headers["Retry-After"] == str(int(WINDOW) - LIMIT) and form.headers["Cache-Control"] == "no-store"
    assert "Too many wrong tokens" in form.get_data(as_text=True) and 'name="next" value="/compare"' in form.get_data(as_text=True)
    api = client.get(urls["api.list_summaries"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 429 and api.get_json()["error"].startswith("Too many wrong tokens")
    link = client.get(f"/compare?token={TOKEN}")
    assert link.status_code == 429 and "Set-Cookie" not in link.headers and TOKEN not in link.get_data(as_text=True)
    assert client.get(urls["api.list_summaries"]).status_code == 401, "no token presented: the usual answer"
    assert member.get(urls["pages.browser"]).status_code == 200, "a browser holding the cookie is never slowed"
    other = app.test_client()
    other.environ_base.update(REMOTE_ADDR="10.0.0.6")
    assert other.post("/login", data={"token": TOKEN}).status_code == 303, "another address is not limited"
    clock.now += WINDOW - LIMIT
    assert client.post("/login", data={"token": TOKEN}).status_code == 303


def test_the_throttle_counts_over_a_sliding_window_and_forgets_old_addresses(monkeypatch):
    clock = Clock()
    throttle = Throttle(limit=3, window=10, clock=clock)
    for step in (0, 4, 8):
        clock.now = 1000 + step
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
    assert throttle.retry_after("a") == 2  # the failure at 1000 leaves at 1010
    clock.now = 1010
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 4  # now the one at 1004 is the oldest of the last three
    monkeypatch.setattr("xaiboard.server.throttle.MAX_ADDRESSES", 5)
    for i in range(20):
        throttle.failed(f"10.1.0.{i}")
    assert len(throttle._failures) <= 5 and "10.1.0.19" in throttle._failures


def test_the_request_log_never_prints_the_token(app, caplog):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
            with opener.open(f"http://127.0.0.1:{server.server_port}/compare?token={TOKEN}&x=1", timeout=10) as page:
                assert page.status == 200 and TOKEN not in page.url
    finally:
        server.shutdown()
        thread.join(timeout=10)
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("/compare?token=[redacted]&x=1" in line for line in lines), lines
    assert not any(TOKEN in line for line in lines)


# -- the command line --------------------------------------------------------------------------------------------


class FakeWaitress:
    """Stands in for waitress' server: ``run()`` returns at once, so ``serve`` prints, serves nothing and ends."""

    effective_port = 4321

    def __init__(self, app, **options):
        self.application = app

    def run(self):
        pass

    def close(self):
        pass


@pytest.fixture
def served(monkeypatch, tmp_path):
    """Run ``xaiboard serve`` to its end with a fake waitress; returns (result, the app it would have served)."""
    import waitress

    made = []
    monkeypatch.setattr(waitress, "create_server", lambda app, **options: made.append(FakeWaitress(app)) or made[-1])
    monkeypatch.delenv("XAIBOARD_TOKEN", raising=False)

    def serve(*args, env=None):
        result = CliRunner().invoke(main, ["serve", str(tmp_path), *args], env=env)
        app = made[-1].application if made else None
        if app is not None:
            app.extensions["xaiboard.registry"].close()
        return result, app

    return serve


def needs_token(app, token: str | None = None) -> bool:
    client = app.test_client()
    refused = client.get("/api/v1/summaries").status_code == 401
    if refused and token is not None:
        assert client.get("/api/v1/summaries", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    return refused


def test_cli_generates_and_prints_a_token_for_a_network_address(served):
    result, app = served("--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    printed = re.findall(r"dashboard at (http://\S+:4321/\?token=(\S+))", result.stderr)
    assert len(printed) == 1 and len(printed[0][1]) >= 43
    assert needs_token(app, printed[0][1])
    assert "no authentication" not in result.stderr
    second, _ = served("--host", "0.0.0.0")
    assert re.findall(r"\?token=(\S+)", second.stderr) != [printed[0][1]]  # a fresh token each start


@pytest.mark.parametrize("where", ["option", "environment"])
def test_cli_uses_the_token_it_is_given_and_does_not_print_it(served, where):
    args, env = (["--token", TOKEN], None) if where == "option" else ([], {"XAIBOARD_TOKEN": TOKEN})
    result, app = served("--host", "0.0.0.0", *args, env=env)
    assert result.exit_code == 0, result.output
    assert needs_token(app, TOKEN)
    assert TOKEN not in result.output and "token=" not in result.stderr


def test_cli_no_auth_is_explicit_and_warns(served):
    result, app = served("--host", "0.0.0.0", "--no-auth")
    assert result.exit_code == 0, result.output
    assert not needs_token(app)
    assert "warning" in result.stderr and "no authentication" in result.stderr
    refused, _ = served("--host", "0.0.0.0", "--no-auth", "--token", TOKEN)
    assert refused.exit_code == 2 and "exclude each other" in refused.output


def test_cli_loopback_needs_no_token_unless_given_one(served):
    result, app = served()
    assert result.exit_code == 0 and not needs_token(app)
    assert "dashboard at http://localhost:4321/ " in result.stderr and "warning" not in result.stderr
    result, app = served("--token", TOKEN)
    assert result.exit_code == 0 and needs_token(app, TOKEN)


@pytest.mark.parametrize("token", ["", "two words", "tab\there"])
def test_cli_refuses_a_token_that_cannot_be_sent(served, token):
    result, app = served("--host", "0.0.0.0", "--token", token)
    assert result.exit_code == 2 and app is None and "token" in result.output


def test_cli_warns_about_a_short_token(served):
    result, app = served("--host", "0.0.0.0", "--token", "abc")
    assert result.exit_code == 0 and needs_token(app, "abc") and "shorter than 16" in result.stderr

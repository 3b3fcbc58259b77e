"""Token authentication for a dashboard that a team reaches over the network.

One shared token (``secrets.token_urlsafe(32)`` unless given) guards every page and API route. A browser proves
it with a cookie, set by the login form or by opening a link with ``?token=`` (which then redirects to the same
address without it, so the token stays out of the address bar and the history); scripts send
``Authorization: Bearer TOKEN``. The cookie holds a value derived from the token, never the token itself, and no
response body, header or log line carries the token.

Static files (CSS, JS, the icon) are served without the token: they hold no data, and the login page needs its
stylesheet. Wrong tokens are limited per client address (:mod:`.throttle`): past the limit, presented tokens get 429
with ``Retry-After`` until the window passes, while browsers holding the cookie go on as before.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Optional
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException, SecurityError

from .throttle import Throttle
from .urls import root

TOKEN_PARAM = "token"
COOKIE_MAX_AGE = 30 * 24 * 3600
#: endpoints answered without the token: files that hold no data, and the way in and out
OPEN_ENDPOINTS = frozenset({"static", "auth.login", "auth.logout"})

auth_pages = Blueprint("auth", __name__)


def generate_token() -> str:
    """A fresh random token, as Jupyter makes them (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def validate_token(token: str) -> str:
    """``token`` itself when it can travel in a header, a cookie check and a URL; else a ``ValueError``."""
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("the token must be a non-empty string without spaces or control characters")
    return token


class TooManyWrongTokens(HTTPException):
    code = 429
    description = "too many wrong tokens from this address"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class TokenAuth:
    """Checks a request's credentials against one token, in constant time."""

    def __init__(self, token: str, throttle: Optional[Throttle] = None) -> None:
        self.throttle = throttle or Throttle()
        self._token = validate_token(token).encode()
        self.cookie_value = self._derive(b"xaiboard cookie value")
        # one name per token, so two dashboards on one host (cookies ignore ports) do not log each other out
        self.cookie_name = "xaiboard_auth_" + self._derive(b"xaiboard cookie name")[:8]

    def _derive(self, purpose: bytes) -> str:
        return hmac.new(self._token, purpose, hashlib.sha256).hexdigest()

    def check_token(self, given: Optional[str]) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self._token)

    def attempt(self, given: Optional[str]) -> bool:
        """Check a token this request presents, counting a wrong one against the client's address; raises
        :class:`TooManyWrongTokens` (without checking) while that address is over the limit."""
        address = request.remote_addr or ""
        wait = self.throttle.retry_after(address)
        if wait:
            raise TooManyWrongTokens(wait)
        if self.check_token(given):
            return True
        self.throttle.failed(address)
        return False

    def authenticated(self) -> bool:
        """Whether this request carries the cookie or the token as a Bearer header."""
        cookie = request.cookies.get(self.cookie_name)
        if cookie is not None and hmac.compare_digest(cookie.encode("utf-8", "surrogatepass"),
                                                      self.cookie_value.encode()):
            return True
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.attempt(credentials.strip())

    def set_cookie(self, response: Response) -> Response:
        response.set_cookie(self.cookie_name, self.cookie_value, max_age=COOKIE_MAX_AGE, path=root(),
                            httponly=True, samesite="Lax", secure=_is_https())
        return response

    def clear_cookie(self, response: Response) -> Response:
        response.delete_cookie(self.cookie_name, path=root(), httponly=True, samesite="Lax", secure=_is_https())
        return response


def _is_https() -> bool:
    # Behind a TLS-terminating proxy the request arrives as http; a client that claims https only gets a cookie
    # its browser will not send over http.
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _current() -> TokenAuth:
    return current_app.extensions["xaiboard.auth"]


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def address_without_token() -> str:
    """This request's address, relative to the site, with every ``token`` parameter removed."""
    query = [(k, v) for k, v in parse_qsl(request.query_string.decode("utf-8", "replace"), keep_blank_values=True)
             if k != TOKEN_PARAM]
    path = quote(request.script_root + request.path, safe="/:@!$&'()*+,;=-._~")
    return path + (f"?{urlencode(query)}" if query else "")


def safe_next(value: Optional[str]) -> str:
    """``value`` when it is a path on this dashboard (no scheme, no host, below the prefix; without a ``token``
    parameter), else its root: the login page never sends a browser to another site."""
    home = root()
    if not value or len(value) > 2000 or any(c in value for c in "\\") or not value.isprintable():
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//") or not value.startswith(home):
        return home
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == TOKEN_PARAM for key, _ in query):  # never echo a token into the page
        kept = urlencode([(key, v) for key, v in query if key != TOKEN_PARAM])
        return parts.path + (f"?{kept}" if kept else "")
    return value


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def _login_page(next_path: str, error: Optional[str], status: int = 200) -> Response:
    response = Response(render_template("login.html", next=next_path, error=error), mimetype="text/html")
    response.status_code = status
    return _no_store(response)


def _too_many(error: TooManyWrongTokens) -> Response:
    message = f"Too many wrong tokens from your address: try again in {error.retry_after} s."
    if _wants_json():
        response = _no_store(jsonify(error=message))
        response.status_code = 429
    else:
        asked = request.values.get("next") if request.endpoint == "auth.login" else address_without_token()
        response = _login_page(safe_next(asked), message, 429)
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def _refuse() -> Response:
    if _wants_json():
        response = jsonify(error="authentication required: send the header 'Authorization: Bearer TOKEN' or "
                                 "log in at " + root() + "login")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="xaiboard"'
        return _no_store(response)
    return _no_store(redirect(f"{root()}login?{urlencode({'next': address_without_token()})}", 303))


def guard() -> Optional[Response]:
    """Before every request: let it through, turn a right ``?token=`` into the cookie, or refuse."""
    if isinstance(request.routing_exception, SecurityError):
        return None  # a Host header the dashboard does not answer to: the Host check's 400 comes first
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    auth = _current()
    if TOKEN_PARAM in request.args:
        given = request.args.getlist(TOKEN_PARAM)
        if auth.attempt(given[0] if len(given) == 1 else None):
            return _no_store(auth.set_cookie(redirect(address_without_token(), 303)))
        return _refuse()
    return None if auth.authenticated() else _refuse()


def private_cache(response: Response) -> Response:
    """What needs the token must not be kept by a shared cache (a proxy) and handed to someone without it."""
    if request.endpoint != "static":
        cache = response.headers.get("Cache-Control")
        if cache and "public" in cache:
            response.headers["Cache-Control"] = cache.replace("public", "private")
    return response


@auth_pages.route("/login", methods=["GET", "POST"])
def login() -> Response:
    auth = _current()
    next_path = safe_next(request.values.get("next"))
    error = None
    if request.method == "POST":
        if _cross_site():
            error, status = "This form only accepts the token from this dashboard's own login page.", 403
        elif auth.attempt(request.form.get(TOKEN_PARAM)):
            return _no_store(auth.set_cookie(redirect(next_path, 303)))
        else:
            error, status = "That is not this dashboard's token.", 401
    elif auth.authenticated():
        return _no_store(redirect(next_path, 303))
    return _login_page(next_path, error, status if error else 200)


def _cross_site() -> bool:
    """A form posted by another site's page (browsers say so in ``Sec-Fetch-Site``)."""
    return request.headers.get("Sec-Fetch-Site") == "cross-site"


@auth_pages.post("/logout")
def logout() -> Response:
    if _cross_site():  # another site must not log the team out
        return _no_store(Response("This form only logs out from this dashboard's own pages.", 403,
                                  mimetype="text/plain"))
    return _no_store(_current().clear_cookie(redirect(f"{root()}login", 303)))


_QUERY_PARAM = re.compile(r"([?&])([^=&\s\"'#?]*)=[^&\s\"'#]*")


def _redact_param(match: re.Match) -> str:
    # the key as the server decodes it: tok%65n= is token= too
    if unquote_plus(match.group(2)) != TOKEN_PARAM:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}=[redacted]"


class RedactTokens(logging.Filter):
    """Replaces the value of every ``token`` parameter in a log line (a request log prints the query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _QUERY_PARAM.sub(_redact_param, message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def redact_request_logs(names: tuple[str, ...] = ("werkzeug", "waitress")) -> None:
    """Keep ``?token=`` values out of the request logs of the WSGI servers (once per logger)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def install(app: Flask, token: Optional[str]) -> None:
    """Require ``token`` on every route of ``app`` but static files (nothing changes when it is ``None``)."""
    redact_request_logs()
    app.jinja_env.globals["auth_enabled"] = token is not None
    if token is None:
        return
    app.extensions["xaiboard.auth"] = TokenAuth(token)
    app.before_request(guard)
    app.after_request(private_cache)
    app.register_error_handler(TooManyWrongTokens, _too_many)
    app.register_blueprint(auth_pages)

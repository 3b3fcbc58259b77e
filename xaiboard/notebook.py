"""The dashboard inside a Jupyter notebook: ``show(directory)`` frames a dashboard served from this process,
``report(directory)`` puts the self-contained report file in the output cell when no server is wanted.

The dashboard refuses to be framed (``X-Frame-Options: DENY``, ``frame-ancestors 'none'``) so that no other site
can overlay it. The notebook's server relaxes exactly those two headers, lets only the notebook's origins
(:data:`FRAME_ANCESTORS`) frame it, binds the loopback address and answers only to loopback host names. One
server per directory runs in a daemon thread, is reused by later calls, and stops when the interpreter (the
kernel) exits.
"""

from __future__ import annotations

import atexit
import html
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

HOST = "127.0.0.1"
# Jupyter (classic, Lab) on this machine and VS Code's notebook views, which render outputs in webviews.
FRAME_ANCESTORS = "'self' http://localhost:* http://127.0.0.1:* https://localhost:* https://127.0.0.1:* " \
                  "vscode-webview: vscode-file:"

__all__ = ["Dashboard", "InlineReport", "report", "servers", "show", "stop"]


def frameable(app: Callable, ancestors: str = FRAME_ANCESTORS) -> Callable:
    """WSGI middleware: responses without ``X-Frame-Options`` and with ``frame-ancestors`` set to ``ancestors``
    in their Content-Security-Policy; every other header as the app set it."""

    def relaxed_policy(policy: str) -> str:
        directives = [d.strip() for d in policy.split(";") if d.strip()]
        kept = [d for d in directives if d.split()[0].lower() != "frame-ancestors"]
        return "; ".join([*kept, f"frame-ancestors {ancestors}"])

    def middleware(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            headers = [(name, relaxed_policy(value) if name.lower() == "content-security-policy" else value)
                       for name, value in headers if name.lower() != "x-frame-options"]
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return middleware


class _Server:
    """A dashboard over one base directory on a free loopback port, served by werkzeug in a daemon thread."""

    def __init__(self, base_dir: Path, reload_interval: float, ancestors: str) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        from xaiboard.server.app import create_app

        class Quiet(WSGIRequestHandler):
            """No line per request: a thread's output would land in whichever cell runs at the time."""

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        self.base_dir = base_dir
        self.app = create_app(base_dir, reload_interval=reload_interval, trusted_hosts=["localhost", HOST])
        self.app.wsgi_app = frameable(self.app.wsgi_app, ancestors)  # type: ignore[method-assign]
        self.http = make_server(HOST, 0, self.app, threaded=True, request_handler=Quiet)
        self.port = self.http.server_port
        self.thread = threading.Thread(target=self.http.serve_forever, name=f"xaiboard-notebook-{self.port}",
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.app.extensions["xaiboard.registry"].close()


_servers: dict[Path, _Server] = {}
_lock = threading.Lock()


def _server(base_dir: Path, reload_interval: float, ancestors: str) -> _Server:
    with _lock:
        server = _servers.get(base_dir)
        if server is None or not server.thread.is_alive():
            server = _servers[base_dir] = _Server(base_dir, reload_interval, ancestors)
        return server


def servers() -> dict[str, str]:
    """The running notebook servers: base directory -> address."""
    with _lock:
        return {str(path): server.url for path, server in _servers.items()}


@atexit.register
def stop() -> None:
    """Stop every notebook server (also done when the interpreter exits)."""
    with _lock:
        running = list(_servers.values())
        _servers.clear()
    for server in running:
        server.stop()


class Dashboard:
    """What :func:`show` returns: notebooks display it as an iframe of ``url``."""

    def __init__(self, url: str, height: int) -> None:
        self.url = url
        self.height = height

    def _repr_html_(self) -> str:
        return (f'<iframe src="{html.escape(self.url)}" title="xaiboard" width="100%" height="{int(self.height)}" '
                f'style="border: 1px solid #e3e6eb; border-radius: 8px;"></iframe>')

    def __repr__(self) -> str:
        return f"xaiboard dashboard at {self.url}"


def show(directory: str | Path = ".", height: int = 800, *, reload_interval: float = 5.0,
         frame_ancestors: str = FRAME_ANCESTORS) -> Dashboard:
    """The dashboard of ``directory`` in the notebook: a summary directory opens on its saliency browser, any
    other directory on the list of the summaries below it. Later calls for the same directory reuse its server;
    ``frame_ancestors`` lists the origins allowed to frame it (a CSP source list; ``*`` for any)."""
    from xaiboard.server.registry import summary_id
    from xaiboard.store import is_summary_dir

    base_dir = Path(directory).resolve()
    if not base_dir.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")
    server = _server(base_dir, reload_interval, frame_ancestors)
    path = f"/s/{summary_id('.')}" if is_summary_dir(base_dir) else "/"
    return Dashboard(server.url + path, height)


class InlineReport:
    """What :func:`report` returns: the report file's HTML (``html``), displayed in a sandboxed iframe so its
    scripts and styles stay apart from the notebook's."""

    def __init__(self, page: str, height: int, details: Any = None) -> None:
        self.html = page
        self.height = height
        self.details = details

    def _repr_html_(self) -> str:
        return (f'<iframe sandbox="allow-scripts" srcdoc="{html.escape(self.html, quote=True)}" title="xaiboard report" '
                f'width="100%" height="{int(self.height)}" style="border: 1px solid #e3e6eb; border-radius: 8px;">'
                '</iframe>')

    def save(self, path: str | Path) -> Path:
        """Write the report file (the same as ``xaiboard export``)."""
        Path(path).write_text(self.html, encoding="utf-8")
        return Path(path)

    def __repr__(self) -> str:
        return f"xaiboard report ({len(self.html.encode('utf-8')) / 1e6:.1f} MB)"


def report(directory: str | Path, samples: int = 24, filters: Optional[Mapping[str, str] | Sequence[str]] = None,
           explainers: Optional[Sequence[str]] = None, height: int = 800, **options: Any) -> InlineReport:
    """The report of a summary (see ``xaiboard export``) shown inline: no server, nothing fetched."""
    from xaiboard.server.export import build_report

    built = build_report(directory, samples=samples, filters=filters, explainers=explainers, **options)
    return InlineReport(built.html, height, built)

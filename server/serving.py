"""Serving the dashboard with waitress (pure Python, also on Windows)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

from .auth import generate_token
from .urls import normalize_base_url

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(base_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, reload_interval: float = 5.0,
                threads: int = 8, **app_options: Any):
    """A waitress server for the dashboard (not yet running); ``port=0`` picks a free port
    (``server.effective_port``). On a loopback address only loopback ``Host`` headers are accepted."""
    from waitress import create_server

    from .app import create_app

    if is_loopback(host) and "trusted_hosts" not in app_options:
        app_options["trusted_hosts"] = [*LOOPBACK_NAMES, host]
    app = create_app(base_dir, reload_interval=reload_interval, **app_options)
    server = create_server(app, host=host, port=port, threads=threads, ident="xaiboard")
    server.app = app  # type: ignore[attr-defined]
    return server


def shutdown(server: Any, timeout: float = 5.0) -> None:
    """Stop a server whose ``run()`` loop runs in another thread. Its sockets are closed from inside that loop
    (closing them from here would pull them from under its ``select``), which ends the loop; then its workers."""
    closed = threading.Event()

    def close_everything() -> None:
        for channel in list(server._map.values()):  # waitress keeps the open connections in this map
            if channel is not server.trigger and channel is not server:
                channel.close()
        server.close()
        closed.set()

    server.trigger.pull_trigger(close_everything)
    closed.wait(timeout)
    server.task_dispatcher.shutdown()
    server.app.extensions["xaiboard.registry"].close()


def access_token(host: str, token: Optional[str] = None, auth: bool = True) -> tuple[Optional[str], bool]:
    """The token the server requires (``None``: none) and whether it was generated here. Any address but the
    loopback gets a token: the one given, else a fresh one; ``auth=False`` is the explicit way out."""
    if not auth:
        if token is not None:
            raise ValueError("a token and no authentication exclude each other")
        return None, False
    if token is None and not is_loopback(host):
        return generate_token(), True
    return token, False


def serve(base_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, reload_interval: float = 5.0, *,
          token: Optional[str] = None, auth: bool = True, base_url: Optional[str] = None) -> None:
    """Serve the summaries below ``base_dir`` until interrupted (Ctrl+C). Off the loopback address every request
    needs ``token`` (one is generated and printed as a ready-to-open URL when none is given) unless ``auth`` is
    false; ``base_url`` serves the dashboard below a path, for a reverse proxy."""
    prefix = normalize_base_url(base_url)
    token, generated = access_token(host, token, auth)
    if token is None and not is_loopback(host):
        print(f"warning: serving on {host} with --no-auth exposes the dashboard to the network with no "
              "authentication, so anyone who can reach this port can read every summary below "
              f"{Path(base_dir).resolve()}", file=sys.stderr)
    elif token is None and prefix:
        print("note: behind a reverse proxy the dashboard is as public as the proxy makes it; give it a token "
              "(--token or XAIBOARD_TOKEN) unless the proxy authenticates", file=sys.stderr)
    elif token is not None and not generated and len(token) < 16:
        print("warning: a token shorter than 16 characters can be guessed; leave --token out to get a random "
              "one", file=sys.stderr)
    print(f"xaiboard: scanning {Path(base_dir).resolve()} for summaries…", file=sys.stderr, flush=True)
    server = make_server(base_dir, host=host, port=port, reload_interval=reload_interval, token=token,
                         base_url=prefix)
    registry = server.app.extensions["xaiboard.registry"]  # type: ignore[attr-defined]
    count = len(registry.entries())
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    if host in WILDCARD_HOSTS:
        shown = socket.gethostname() or host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    address = f"http://{shown}:{server.effective_port}{prefix}/"
    how = "Ctrl+C to stop"
    if generated:
        address += f"?{urlencode({'token': token})}"
    elif token is not None:
        how = "log in with the token of --token or XAIBOARD_TOKEN; Ctrl+C to stop"
    print(f"xaiboard: {count} summar{'y' if count == 1 else 'ies'} below {registry.base_dir}", file=sys.stderr)
    print(f"xaiboard: dashboard at {address} ({how})", file=sys.stderr, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        registry.close()

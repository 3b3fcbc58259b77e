"""Serving the dashboard with waitress (pure Python, also on Windows)."""

from __future__ import annotations

import ipaddress
import sys
import threading
from pathlib import Path
from typing import Any

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


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


def serve(base_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, reload_interval: float = 5.0) -> None:
    """Serve the summaries below ``base_dir`` until interrupted (Ctrl+C)."""
    if not is_loopback(host):
        print(f"warning: serving on {host} exposes the dashboard to the network; it has no authentication, "
              "so anyone who can reach this port can read every summary below "
              f"{Path(base_dir).resolve()}", file=sys.stderr)
    print(f"xaiboard: scanning {Path(base_dir).resolve()} for summaries…", file=sys.stderr, flush=True)
    server = make_server(base_dir, host=host, port=port, reload_interval=reload_interval)
    registry = server.app.extensions["xaiboard.registry"]  # type: ignore[attr-defined]
    count = len(registry.entries())
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    print(f"xaiboard: {count} summar{'y' if count == 1 else 'ies'} below {registry.base_dir}", file=sys.stderr)
    print(f"xaiboard: dashboard at http://{shown}:{server.effective_port}/ (Ctrl+C to stop)", file=sys.stderr)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        registry.close()

"""Serving with waitress: the CLI options, the warning on a public address, a real server on a free port."""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from xaiboard.server import serving
from xaiboard.server.cli import main


class FakeServer:
    effective_port = 4321

    def __init__(self, app):
        self.app = app
        self.ran = self.closed = False

    def run(self):
        self.ran = True

    def close(self):
        self.closed = True


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
                                           ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    assert serving.is_loopback(host) is loopback


@pytest.mark.parametrize("host,warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_serve_warns_that_a_public_address_has_no_authentication(tmp_path, monkeypatch, capsys, host, warned):
    made = {}

    def fake_make_server(base_dir, host, port, reload_interval, token, base_url):
        from xaiboard.server import create_app

        made.update(host=host, port=port, reload_interval=reload_interval)
        made["server"] = FakeServer(create_app(base_dir, reload_interval=0, token=token, base_url=base_url))
        return made["server"]

    monkeypatch.setattr(serving, "make_server", fake_make_server)
    serving.serve(tmp_path, host=host, port=0, reload_interval=2.5, auth=False)
    err = capsys.readouterr().err
    assert ("no authentication" in err) is warned
    assert "0 summaries" in err and "4321" in err
    assert made["server"].ran and made["server"].closed and made["reload_interval"] == 2.5


def test_cli_serve_passes_its_options(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(serving, "serve", lambda base_dir, **options: calls.append((base_dir, options)))
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "9001",
                                       "--reload-interval", "3"])
    assert result.exit_code == 0, result.output
    assert calls == [(str(tmp_path), {"host": "0.0.0.0", "port": 9001, "reload_interval": 3.0, "token": None,
                                      "auth": True, "base_url": ""})]


def test_real_server_on_a_free_port_checks_the_host_header(tmp_path):
    server = serving.make_server(tmp_path, host="127.0.0.1", port=0, reload_interval=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    keep_alive = None
    try:
        url = f"http://127.0.0.1:{server.effective_port}/api/v1/summaries"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and response.headers["X-Content-Type-Options"] == "nosniff"
        request = urllib.request.Request(url, headers={"Host": "rebinding.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
        keep_alive = http.client.HTTPConnection("127.0.0.1", int(server.effective_port), timeout=10)
        keep_alive.request("GET", "/api/v1/summaries")
        assert keep_alive.getresponse().read()  # a browser's open connection must not keep the server alive
    finally:
        serving.shutdown(server)
        thread.join(timeout=10)
        assert not thread.is_alive()
        if keep_alive is not None:
            keep_alive.close()

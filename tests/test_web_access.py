"""Passwords and HTTPS for the live view: every endpoint asks, wrong credentials are refused and logged."""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import subprocess

import pytest

from edgecodec.errors import ConfigError
from edgecodec.server.hub import FrameHub
from edgecodec.web import LiveView, Viewers
from tests.web_helpers import FakeDecoder, http_get

pytestmark = pytest.mark.timeout(60)


def basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


async def serving(viewers=None, ssl_context=None):
    view = LiveView(FrameHub(), lambda: FakeDecoder([]), "127.0.0.1", 0, viewers=viewers, ssl_context=ssl_context)
    await view.start()
    return view, view.address[1]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 50))


@pytest.fixture()
def viewers_file(tmp_path):
    path = tmp_path / "viewers.toml"
    path.write_text('[viewers]\nalice = "correct horse"\n')
    os.chmod(path, 0o600)
    return str(path)


@pytest.mark.parametrize("path", ["/", "/api/cameras", "/metrics", "/ws", "/stream/cam.mjpg", "/snapshot/cam.jpg"])
def test_every_endpoint_asks_for_a_password(viewers_file, path):
    async def main():
        view, port = await serving(Viewers.load(viewers_file))
        try:
            return await http_get(port, path)
        finally:
            await view.stop()

    status, headers, _ = run(main())
    assert status == 401
    assert headers["www-authenticate"].startswith('Basic realm="edgecodec live view"')


@pytest.mark.parametrize("credentials", [basic("alice", "wrong horse"), basic("mallory", "correct horse"),
                                         {"Authorization": "Basic !!notbase64"},
                                         {"Authorization": "Bearer correct horse"}])
def test_wrong_credentials_are_refused_and_logged(viewers_file, credentials, caplog):
    async def main():
        view, port = await serving(Viewers.load(viewers_file))
        try:
            return await http_get(port, "/api/cameras", headers=credentials)
        finally:
            await view.stop()

    with caplog.at_level(logging.WARNING, logger="edgecodec.web.server"):
        status, _, _ = run(main())
    assert status == 401
    assert "wrong name or password" in caplog.text


def test_right_credentials_open_the_page_and_the_figures(viewers_file):
    async def main():
        view, port = await serving(Viewers.load(viewers_file))
        try:
            return [await http_get(port, p, headers=basic("alice", "correct horse")) for p in ("/", "/api/cameras")]
        finally:
            await view.stop()

    (page_status, _, page), (api_status, _, api) = run(main())
    assert page_status == api_status == 200
    assert b"<html" in page.lower() and b'"cameras"' in api


def test_live_view_serves_https_with_the_server_certificate(tmp_path, viewers_file):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False

    async def main():
        view, port = await serving(Viewers.load(viewers_file), server_ctx)
        try:
            secure = await http_get(port, "/api/cameras", headers=basic("alice", "correct horse"), ssl=client_ctx)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # plain HTTP to the TLS port
            writer.write(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n\r\n")
            plain = await asyncio.wait_for(reader.read(), 20)
            writer.close()
            return view.url, secure, plain
        finally:
            await view.stop()

    url, (status, _, body), plain = run(main())
    assert url.startswith("https://") and status == 200 and b'"cameras"' in body
    assert not plain.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("text, message", [
    ("", "needs a [viewers] table"),
    ("[viewers]\n", "needs a [viewers] table"),
    ('[viewers]\nalice = "short"\n', "8 or more"),
    ("[viewers]\nalice = 12345678\n", "must be a string"),
    ('[viewers]\n"a:b" = "long enough"\n', "cannot hold ':'"),
    ("[viewers\n", "viewers.toml"),
])
def test_malformed_viewers_files_are_explained(tmp_path, text, message):
    path = tmp_path / "viewers.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Viewers.load(str(path))


def test_missing_viewers_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read viewers file"):
        Viewers.load(str(tmp_path / "absent.toml"))

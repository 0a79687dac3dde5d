"""``edgecodec serve --record DIR --http HOST:PORT``: the desktop side's consumers wired into the server."""
from __future__ import annotations

import socket
import urllib.request

import pytest

from edgecodec.transport import open_link
from tests.stream_support import ServerThread, frame_packet, free_port, link_config, wait_until

pytestmark = pytest.mark.timeout(60)


def test_recorder_and_live_view_receive_the_frames_the_server_stores(tmp_path):
    port = free_port()
    with ServerThread(tmp_path, record=str(tmp_path / "rec"), http=f"127.0.0.1:{port}") as server:
        link = open_link(link_config(server.url))
        link.connect()
        for seq in range(5):
            link.send_frame(seq, frame_packet(seq))
        wait_until(lambda: link.poll(0.05) == 4, 10, what="acks")
        link.close()
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        assert b"<html" in page.lower()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "cam1" in metrics
    from edgecodec.recording import RecordingReader

    files = list((tmp_path / "rec").rglob("*.ecr"))
    assert len(files) == 1
    with RecordingReader(files[0]) as reader:
        assert [f.sequence for f in reader.scan().frames] == list(range(5))


def test_a_live_view_port_in_use_is_a_clear_error(tmp_path):
    import asyncio

    from edgecodec.errors import ConfigError
    from edgecodec.server.service import EdgeServer, ServerConfig
    from tests.stream_support import write_secrets

    busy = socket.create_server(("127.0.0.1", 0))
    config = ServerConfig(secrets_file=str(write_secrets(tmp_path, {"cam1": "x" * 16})), listen="127.0.0.1:0",
                          http=f"127.0.0.1:{busy.getsockname()[1]}")
    with pytest.raises(ConfigError, match="cannot serve the live view"):
        asyncio.run(EdgeServer(config).run(asyncio.Event()))
    busy.close()

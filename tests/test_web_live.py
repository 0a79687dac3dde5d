"""The live view's HTTP side against a real FrameHub: pages, figures, streams, snapshots, decoding on demand."""
from __future__ import annotations

import asyncio
import json
import os
import struct

import cv2
import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.server.hub import FrameHub
from edgecodec.web import LiveView, attach, metrics, websocket
from tests.recording_helpers import fake_packet
from tests.web_helpers import FakeDecoder, WsClient, http_get

pytestmark = pytest.mark.timeout(60)


def publish(hub, camera_id, sequence):
    packet = fake_packet(sequence)
    header, _ = bitstream.unpack(packet)
    hub.publish(camera_id, header, packet)


async def serving(hub, decoded):
    view = LiveView(hub, lambda: FakeDecoder(decoded), "127.0.0.1", 0)
    await view.start()
    return view, view.address[1]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 50))


def test_page_and_camera_figures_are_served():
    async def main():
        hub = FrameHub()
        hub.set_connected("yard", True)
        for i in range(3):
            publish(hub, "yard", i)
        hub.add_dropped("yard", 2)
        view, port = await serving(hub, [])
        try:
            status, headers, body = await http_get(port, "/")
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert b"<title>edgecodec live view</title>" in body
            status, _, body = await http_get(port, "/api/cameras")
            (row,) = json.loads(body)["cameras"]
            assert row["camera"] == "yard" and row["frames"] == 3 and row["dropped"] == 2
            assert row["connected"] and (row["width"], row["height"]) == (64, 48)
            assert row["compression_ratio"] == pytest.approx(64 * 48 * 3 * 3 / row["bytes"], abs=0.1)
            assert row["fps"] > 0 and row["kbps"] > 0 and row["age_s"] < 5
        finally:
            await view.stop()

    run(main())


def test_metrics_are_prometheus_text_with_every_figure():
    async def main():
        hub = FrameHub()
        publish(hub, 'odd "name"', 0)
        view, port = await serving(hub, [])
        try:
            status, headers, body = await http_get(port, "/metrics")
        finally:
            await view.stop()
        assert status == 200 and headers["content-type"] == metrics.CONTENT_TYPE
        text = body.decode()
        for name, kind, _help, _key in metrics.METRICS:
            assert f"# TYPE {name} {kind}" in text
        assert 'edgecodec_camera_frames_total{camera="odd \\"name\\""} 1\n' in text
        assert 'edgecodec_camera_dropped_frames_total{camera="odd \\"name\\""} 0\n' in text

    run(main())


def test_only_watched_cameras_are_decoded():
    async def main():
        hub, decoded = FrameHub(), []
        view, port = await serving(hub, decoded)
        try:
            publish(hub, "front", 0)
            publish(hub, "back", 0)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /stream/front.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"multipart/x-mixed-replace" in head
            jpegs = []
            for seq in range(1, 4):
                publish(hub, "back", seq)   # nobody watches: never decoded
                part = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(part.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                jpegs.append(await reader.readexactly(length + 2))
                publish(hub, "front", seq)
            writer.close()
            img = cv2.imdecode(np.frombuffer(jpegs[-1][:-2], np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (48, 64, 3)
            assert view.decoder.decoded["back"] == 0
            assert view.decoder.decoded["front"] >= 3
            for _ in range(100):  # the viewer leaving stops the decoding
                if view.decoder.viewers("front") == 0:
                    break
                await asyncio.sleep(0.05)
            before = view.decoder.decoded["front"]
            publish(hub, "front", 9)
            await asyncio.sleep(0.3)
            assert view.decoder.decoded["front"] == before
        finally:
            await view.stop()

    run(main())


@pytest.mark.parametrize("suffix, magic", [("png", b"\x89PNG"), ("jpg", b"\xff\xd8")])
def test_snapshot_decodes_the_newest_frame_on_demand(suffix, magic):
    async def main():
        hub, decoded = FrameHub(), []
        for i in range(5):
            publish(hub, "cam", i)
        view, port = await serving(hub, decoded)
        try:
            status, headers, body = await http_get(port, f"/snapshot/cam.{suffix}")
            assert status == 200 and body.startswith(magic)
            assert decoded == [4]  # just the newest, only when asked
            img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (48, 64, 3) and abs(int(img[0, 0, 0]) - 160) <= 3
            status, _, _ = await http_get(port, f"/snapshot/cam.{suffix}")
            assert status == 200 and decoded == [4]  # unchanged frame: served again, not re-decoded
        finally:
            await view.stop()

    run(main())


def test_websocket_sends_stats_and_frames_of_watched_cameras():
    async def main():
        hub, decoded = FrameHub(), []
        publish(hub, "a", 0)
        publish(hub, "b", 0)
        view, port = await serving(hub, decoded)
        ws = await WsClient.connect(port)
        try:
            stats = await ws.receive()
            assert stats["type"] == "stats" and [c["camera"] for c in stats["cameras"]] == ["a", "b"]
            await ws.send_json({"watch": ["b", "nonexistent"]})
            seen = []
            while len(seen) < 3:
                msg = await ws.receive()
                if isinstance(msg, tuple):
                    meta, jpeg = msg
                    assert meta["camera"] == "b" and jpeg.startswith(b"\xff\xd8")
                    seen.append(meta["sequence"])
                    publish(hub, "b", len(seen))
                    publish(hub, "a", len(seen))
            assert seen == [0, 1, 2]
            assert view.decoder.decoded["a"] == 0
            await ws.send_json({"watch": []})
            for _ in range(100):
                if view.decoder.viewers("b") == 0:
                    break
                await asyncio.sleep(0.05)
            assert view.decoder.viewers("b") == 0
            await ws.close()
        finally:
            await view.stop()

    run(main())


def test_bad_requests_get_http_errors():
    async def main():
        hub = FrameHub()
        view, port = await serving(hub, [])
        try:
            assert (await http_get(port, "/nowhere"))[0] == 404
            assert (await http_get(port, "/snapshot/ghost.png"))[0] == 404
            assert (await http_get(port, "/", method="POST"))[0] == 405
            assert (await http_get(port, "/ws"))[0] == 400
        finally:
            await view.stop()

    run(main())


def test_attach_binds_before_returning_and_refuses_a_busy_port():
    async def main():
        hub = FrameHub()
        view = attach(hub, "127.0.0.1", 0)
        port = view.address[1]
        try:
            from edgecodec.errors import ConfigError

            with pytest.raises(ConfigError, match="cannot serve the live view"):
                attach(hub, "127.0.0.1", port)
            assert (await http_get(port, "/api/cameras"))[0] == 200
        finally:
            await view.close()

    run(main())


def test_websocket_frames_round_trip_with_and_without_mask():
    async def main():
        for size in (0, 5, 125, 126, 70000 % websocket.MAX_MESSAGE, websocket.MAX_MESSAGE):
            payload = os.urandom(size)
            for mask in (None, os.urandom(4)):
                reader = asyncio.StreamReader()
                reader.feed_data(websocket.encode_frame(websocket.BINARY, payload, mask))
                assert await websocket.read_frame(reader) == (websocket.BINARY, payload)
        reader = asyncio.StreamReader()
        reader.feed_data(struct.pack("!BBQ", 0x82, 127, websocket.MAX_MESSAGE + 1))
        with pytest.raises(websocket.WebSocketClosed, match="too large"):
            await websocket.read_frame(reader)

    run(main())


def test_websocket_accept_key_matches_the_rfc_example():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

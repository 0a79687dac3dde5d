"""The live view: an asyncio HTTP server over a ``FrameHub`` (no framework, no front-end build).

Routes:
    /                       the page (static/index.html)
    /ws                     WebSocket: the page says which cameras it shows, gets their JPEGs and stats
    /stream/<camera>.mjpg   MJPEG for other players (VLC, ffplay, an <img> tag)
    /snapshot/<camera>.jpg  the newest frame, decoded on demand (.png too)
    /api/cameras            per-camera figures as JSON
    /metrics                the same figures for Prometheus

With ``viewers`` every route first asks for HTTP Basic credentials (``access``); with ``ssl_context``
the whole view is served over HTTPS.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import logging
import socket
import ssl
import struct
import time
from typing import Callable, Optional

import cv2

from edgecodec.web import metrics, websocket
from edgecodec.web.access import Viewers
from edgecodec.web.feeds import LiveDecoder, Picture
from edgecodec.web.http import (HEAD_TIMEOUT, HttpError, Request, read_request, respond, respond_error,
                                response_head)

log = logging.getLogger(__name__)

STATS_INTERVAL = 1.0
SNAPSHOT_TIMEOUT = 10.0
BOUNDARY = "edgecodecframe"


def camera_rows(hub, decoder: LiveDecoder, now: Optional[float] = None) -> list[dict]:
    """One dict of figures per camera, sorted by id: what the page, /api/cameras and /metrics show."""
    now = time.time() if now is None else now
    rows = []
    for st in sorted(hub.cameras(), key=lambda s: s.camera_id):
        rows.append({
            "camera": st.camera_id, "frames": st.frames, "bytes": st.bytes,
            "fps": round(st.fps(now), 2), "kbps": round(st.kbps(now), 1),
            "compression_ratio": round(st.compression_ratio(), 1), "last_seen": round(st.last_seen, 3),
            "age_s": round(now - st.last_seen, 1) if st.last_seen else None, "dropped": st.dropped,
            "connected": st.connected, "width": st.width, "height": st.height,
            "viewers": decoder.viewers(st.camera_id), "decoded": decoder.decoded[st.camera_id],
            "waiting_for_key_frame": decoder.waiting[st.camera_id], "key_frame_waits": decoder.key_waits[st.camera_id],
        })
    return rows


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; OSError (port in use, bad address) surfaces here, before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Viewer:
    """What one connection waits for: the newest picture of each camera it watches."""

    def __init__(self) -> None:
        self.pending: dict[str, Picture] = {}
        self.event = asyncio.Event()

    def offer(self, picture: Picture) -> None:
        self.pending[picture.camera_id] = picture
        self.event.set()

    async def take(self) -> list[Picture]:
        await self.event.wait()
        self.event.clear()
        pictures, self.pending = list(self.pending.values()), {}
        return pictures


class LiveView:
    """``await start()`` serves on (host, port) — or on a bound ``sock`` — until ``await stop()``."""

    def __init__(self, hub, decoder_factory: Callable[[], object], host: str = "127.0.0.1",
                 port: int = 8080, sock: Optional[socket.socket] = None, viewers: Optional[Viewers] = None,
                 ssl_context: Optional[ssl.SSLContext] = None):
        self.hub = hub
        self.viewers = viewers  # None: anyone who reaches the port
        self.ssl_context = ssl_context
        self.decoder = LiveDecoder(hub, decoder_factory)
        self.host, self.port = host, port
        self._sock = sock
        self._server: Optional[asyncio.base_events.Server] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._viewers: dict[str, set[_Viewer]] = {}
        self._connections: set[asyncio.Task] = set()
        self._page = importlib.resources.files("edgecodec.web").joinpath("static/index.html").read_bytes()

    @property
    def address(self) -> tuple[str, int]:
        sock = self._server.sockets[0] if self._server else self._sock
        return sock.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._sock is None:
            self._sock = bind(self.host, self.port)
        self.decoder.add_listener(self._from_worker)
        self.decoder.start()
        self._server = await asyncio.start_server(self._serve, sock=self._sock, ssl=self.ssl_context,
                                                  ssl_handshake_timeout=HEAD_TIMEOUT if self.ssl_context else None)
        log.info("live view on %s%s", self.url, "" if self.viewers else " (no password)")
        if not self._loopback():
            if self.viewers is None:
                log.warning("the live view is open to anyone who reaches %s (see --http-users)", self.url)
            elif self.ssl_context is None:
                log.warning("live view passwords cross the network in clear text (see --http-tls)")

    def _loopback(self) -> bool:
        host = self.address[0]
        return host in ("localhost", "::1") or host.startswith("127.")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        await asyncio.get_running_loop().run_in_executor(None, self.decoder.close)

    close = stop  # the server's consumers are closed with ``close()``

    # --- pictures from the decoder thread to the connections ----------------------------------

    def _from_worker(self, picture: Picture) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, picture)

    def _deliver(self, picture: Picture) -> None:
        for viewer in self._viewers.get(picture.camera_id, ()):
            viewer.offer(picture)

    def _watch(self, viewer: _Viewer, camera_id: str) -> None:
        self._viewers.setdefault(camera_id, set()).add(viewer)
        self.decoder.watch(camera_id)
        picture = self.decoder.picture(camera_id)
        if picture is not None:
            viewer.offer(picture)

    def _unwatch(self, viewer: _Viewer, camera_id: str) -> None:
        viewers = self._viewers.get(camera_id, set())
        if viewer in viewers:
            viewers.discard(viewer)
            self.decoder.unwatch(camera_id)

    # --- HTTP ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            request = await read_request(reader)
            if request is not None and self._admitted(request, writer):
                await self._route(request, reader, writer)
            elif request is not None:
                await respond_error(writer, 401, "this live view needs a name and password",
                                    extra=Viewers.challenge())
        except HttpError as exc:
            with contextlib.suppress(ConnectionError):
                await respond_error(writer, exc.status, str(exc))
        except (ConnectionError, asyncio.TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("live view request failed")
            with contextlib.suppress(ConnectionError):
                await respond_error(writer, 500)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _admitted(self, request: Request, writer) -> bool:
        if self.viewers is None:
            return True
        given = request.header("authorization")
        if self.viewers.check(given) is not None:
            return True
        if given:  # a browser's first request carries none: only wrong credentials are news
            log.warning("live view refused %s: wrong name or password", writer.get_extra_info("peername"))
        return False

    async def _route(self, request: Request, reader, writer) -> None:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405)
        head = request.method == "HEAD"
        path = request.path
        if path in ("/", "/index.html"):
            await respond(writer, 200, self._page, "text/html; charset=utf-8", head)
        elif path == "/api/cameras":
            body = json.dumps({"time": time.time(), "cameras": camera_rows(self.hub, self.decoder)}).encode()
            await respond(writer, 200, body, "application/json", head)
        elif path == "/metrics":
            body = metrics.render(camera_rows(self.hub, self.decoder)).encode()
            await respond(writer, 200, body, metrics.CONTENT_TYPE, head)
        elif path == "/ws":
            await self._websocket(request, reader, writer)
        elif path.startswith("/stream/") and path.endswith(".mjpg"):
            await self._mjpeg(self._camera(path[len("/stream/"):-len(".mjpg")]), writer)
        elif path.startswith("/snapshot/") and path.endswith((".jpg", ".png")):
            await self._snapshot(self._camera(path[len("/snapshot/"):-4]), path[-3:], writer, head)
        else:
            raise HttpError(404, f"no such page: {path}")

    def _camera(self, camera_id: str) -> str:
        if self.hub.latest(camera_id) is None:
            raise HttpError(404, f"no frames from camera {camera_id!r}")
        return camera_id

    async def _snapshot(self, camera_id: str, fmt: str, writer, head: bool) -> None:
        newest = self.hub.latest(camera_id)[0].sequence
        picture = self.decoder.picture(camera_id)
        if picture is None or picture.sequence != newest:
            viewer = _Viewer()
            self._viewers.setdefault(camera_id, set()).add(viewer)
            asked = time.time()
            deadline = time.monotonic() + SNAPSHOT_TIMEOUT
            try:
                self.decoder.request(camera_id)
                while picture is None or picture.decoded_at < asked:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise HttpError(504, "decoding took too long (see the server log)")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(viewer.take(), left)
                    picture = self.decoder.picture(camera_id)
            finally:
                self._viewers[camera_id].discard(viewer)
        if fmt == "jpg":
            body, kind = picture.jpeg, "image/jpeg"
        else:
            ok, png = cv2.imencode(".png", cv2.cvtColor(picture.rgb, cv2.COLOR_RGB2BGR))
            body, kind = png.tobytes(), "image/png"
        await respond(writer, 200, body, kind, head)

    async def _mjpeg(self, camera_id: str, writer) -> None:
        writer.write(response_head(200, f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                   extra={"Connection": "close"}))
        viewer = _Viewer()
        self._watch(viewer, camera_id)
        try:
            while True:
                for picture in await viewer.take():
                    writer.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(picture.jpeg)}\r\n\r\n".encode())
                    writer.write(picture.jpeg + b"\r\n")
                await writer.drain()
        finally:
            self._unwatch(viewer, camera_id)

    async def _websocket(self, request: Request, reader, writer) -> None:
        key = request.header("sec-websocket-key")
        if request.header("upgrade").lower() != "websocket" or not key:
            raise HttpError(400, "expected a WebSocket upgrade")
        writer.write(websocket.handshake_response(key))
        viewer, watched = _Viewer(), set()
        send_lock = asyncio.Lock()

        async def send(opcode: int, payload: bytes) -> None:
            async with send_lock:
                writer.write(websocket.encode_frame(opcode, payload))
                await writer.drain()

        async def push_pictures() -> None:
            while True:
                for picture in await viewer.take():
                    meta = json.dumps({"camera": picture.camera_id, "sequence": picture.sequence,
                                       "timestamp_us": picture.timestamp_us}).encode()
                    await send(websocket.BINARY, struct.pack("!H", len(meta)) + meta + picture.jpeg)

        async def push_stats() -> None:
            while True:
                rows = camera_rows(self.hub, self.decoder)
                await send(websocket.TEXT, json.dumps({"type": "stats", "time": time.time(),
                                                       "cameras": rows}).encode())
                await asyncio.sleep(STATS_INTERVAL)

        pushers = [asyncio.ensure_future(push_pictures()), asyncio.ensure_future(push_stats())]
        reading: Optional[asyncio.Future] = None
        try:
            while True:
                if reading is None:
                    reading = asyncio.ensure_future(websocket.read_frame(reader))
                done, _ = await asyncio.wait([reading, *pushers], return_when=asyncio.FIRST_COMPLETED)
                if reading not in done:  # a pusher ended: the connection is gone
                    break
                finished, reading = reading, None
                try:
                    opcode, payload = finished.result()
                except websocket.WebSocketClosed:
                    break
                if opcode == websocket.CLOSE:
                    with contextlib.suppress(ConnectionError):
                        await send(websocket.CLOSE, payload[:2])
                    break
                if opcode == websocket.PING:
                    await send(websocket.PONG, payload)
                elif opcode == websocket.TEXT:
                    wanted = self._parse_watch(payload)
                    for camera_id in watched - wanted:
                        self._unwatch(viewer, camera_id)
                    for camera_id in wanted - watched:
                        self._watch(viewer, camera_id)
                    watched = wanted
        finally:
            tasks = pushers + ([reading] if reading is not None else [])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for camera_id in watched:
                self._unwatch(viewer, camera_id)

    def _parse_watch(self, payload: bytes) -> set[str]:
        """A page message ``{"watch": [camera ids]}``: the cameras it shows; unknown ones are ignored."""
        try:
            ids = json.loads(payload).get("watch", [])
        except (ValueError, AttributeError):
            return set()
        known = {st.camera_id for st in self.hub.cameras()}
        return {c for c in ids if isinstance(c, str) and c in known}

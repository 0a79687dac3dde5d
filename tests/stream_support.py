"""Shared pieces for the edge, server and stream tests: a fast stand-in codec, a server running in a
thread, real server/edge processes, a TCP proxy that can cut the network, and a mosquitto broker."""
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from edgecodec import bitstream
from edgecodec.bitstream import Header, Kind

SECRET = "s3cret-for-tests-0123456789"
MODEL_ID = b"testmdl1"
REPO = pathlib.Path(__file__).resolve().parents[1]


def wait_until(condition, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame_packet(sequence: int, size: int = 200, model_id: bytes = MODEL_ID, quality: int = 1,
                 timestamp_us: int = 0) -> bytes:
    header = Header(kind=Kind.FRAME, model_id=model_id, width=64, height=48, channels=3,
                    quality=quality, sequence=sequence, timestamp_us=timestamp_us or time.time_ns() // 1000)
    return bitstream.pack(header, [bytes(size)])


class FakeCodec:
    """The codec's interface at a fraction of the cost: packets whose size grows with quality."""

    model_id = MODEL_ID
    qualities = list(range(8))

    def __init__(self, delay: float = 0.0, base: int = 300):
        self.delay = delay
        self.base = base

    def encode(self, image, quality, *, kind=Kind.FRAME, sequence=0, timestamp_us=0):
        if self.delay:
            time.sleep(self.delay)
        header = Header(kind=kind, model_id=self.model_id, width=image.shape[1], height=image.shape[0],
                        channels=3, quality=quality, sequence=sequence, timestamp_us=timestamp_us)
        return bitstream.pack(header, [bytes(int(self.base * 1.2**quality))])


def write_secrets(folder: pathlib.Path, cameras: dict[str, str]) -> pathlib.Path:
    path = folder / "secrets.toml"
    path.write_text("[cameras]\n" + "".join(f'{cid} = "{secret}"\n' for cid, secret in cameras.items()))
    return path


class ServerThread:
    """An ``EdgeServer`` on an event loop in a background thread, bound to a free loopback port."""

    def __init__(self, folder: pathlib.Path, cameras: dict[str, str] | None = None, **overrides):
        from edgecodec.server.service import EdgeServer, ServerConfig

        secrets = write_secrets(folder, cameras or {"cam1": SECRET, "cam2": SECRET})
        config = ServerConfig(secrets_file=str(secrets), listen="127.0.0.1:0", **overrides)
        self.server = EdgeServer(config)
        self.hub = self.server.hub
        self.ingest = self.server.ingest
        self.received: list[tuple[str, int]] = []
        self.hub.subscribe(lambda cid, header, packet: self.received.append((cid, header.sequence)))
        self._ready = threading.Event()
        self._loop = None
        self._stop = None
        self.figures = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.figures = await self.server.run(self._stop, on_ready=lambda s: self._ready.set())

        asyncio.run(main())

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        assert self._ready.wait(20), "server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def port(self) -> int:
        return self.server.address[1]

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


def link_config(url: str, camera_id: str = "cam1", secret: str = SECRET, stream_id: bytes = b"stream01",
                **kw):
    from edgecodec.transport import LinkConfig

    return LinkConfig(url=url, camera_id=camera_id, secret=secret.encode(), model_id=MODEL_ID,
                      stream_id=stream_id, connect_timeout=kw.pop("connect_timeout", 3.0),
                      io_timeout=kw.pop("io_timeout", 3.0), **kw)


# --- real processes ---------------------------------------------------------------------------

def edgecodec_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "edgecodec", *map(str, args)]


def spawn(args: list[str], log_path: pathlib.Path, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=stdout, stderr=open(log_path, "ab"), cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def start_server_process(folder: pathlib.Path, port: int, *extra, name: str = "server") -> subprocess.Popen:
    """``edgecodec serve`` on ``port`` with a frame log and state dir in ``folder``; waits until it listens."""
    secrets = folder / "secrets.toml"
    if not secrets.exists():
        write_secrets(folder, {"cam1": SECRET})
    port_file = folder / f"{name}.port"
    port_file.unlink(missing_ok=True)
    proc = spawn(edgecodec_cmd("serve", "--secrets", secrets, "--listen", f"127.0.0.1:{port}",
                               "--port-file", port_file, "--frame-log", folder / "frames.jsonl",
                               "--state-dir", folder / "server-state", *extra),
                 folder / f"{name}.log", stdout=open(folder / f"{name}.json", "w"))
    wait_until(lambda: port_file.exists() or proc.poll() is not None, 60, what="server to listen")
    assert proc.poll() is None, (folder / f"{name}.log").read_text()
    return proc


def start_edge_process(folder: pathlib.Path, url: str, *extra, name: str = "edge") -> subprocess.Popen:
    (folder / "cam1.secret").write_text(SECRET + "\n")
    return spawn(edgecodec_cmd("edge", "--camera-id", "cam1", "--source", "synthetic", "--server", url,
                               "--secret-file", folder / "cam1.secret", "--spool-dir", folder / "edge-state",
                               "--width", 96, "--height", 64, "--fps", 10, "--quality", 1,
                               "--threads", 1, "--ack-timeout", 2, "--connect-timeout", 1,
                               "--retry-max", 0.5, "--status-interval", 0, "--json", *extra),
                 folder / f"{name}.log", stdout=open(folder / f"{name}.json", "w"))


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process did not exit within {timeout} s of {sig!r}")


def frame_log(folder: pathlib.Path) -> list[dict]:
    path = folder / "frames.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged_sequences(folder: pathlib.Path) -> list[int]:
    return [f["sequence"] for f in frame_log(folder)]


# --- network cuts ----------------------------------------------------------------------------

class CuttableProxy:
    """A loopback TCP forwarder whose "network" can be cut: while cut, it silently swallows traffic in
    both directions and leaves new connections hanging, like a dead link (no FIN, no RST)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.cut = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        while self.cut and not self._closed:  # a hanging connection attempt
            time.sleep(0.05)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._pairs.append((client, upstream))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.cut:
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        """Bring the network back; connections that lived through the cut are reset, as a NAT would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                s.close()
        self.cut = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.restore()


# --- MQTT broker ------------------------------------------------------------------------------

class Mosquitto:
    """A private mosquitto broker on a free loopback port."""

    def __init__(self, folder: pathlib.Path, anonymous: bool = True):
        self.port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous {str(anonymous).lower()}\n"
                        "persistence false\n")
        self.proc = subprocess.Popen([mosquitto_path(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(folder / "mosquitto.log", "ab"))

        def accepting():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(accepting, 10, what="mosquitto")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)

"""A fake decoder and a tiny asyncio HTTP/WebSocket client for live-view tests."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import struct

import numpy as np

from edgecodec import bitstream
from edgecodec.web import websocket


class FakeDecoder:
    """Decodes any packet to a flat image whose colour follows the sequence; logs what it decoded."""

    def __init__(self, log: list):
        self.log = log

    def decode(self, packet: bytes) -> np.ndarray:
        header, _ = bitstream.unpack(packet)
        self.log.append(header.sequence)
        return np.full((header.height, header.width, 3), (header.sequence * 40) % 256, np.uint8)


async def http_get(port: int, path: str, method: str = "GET", headers: dict | None = None,
                   ssl=None) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict((k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), headers, body


class WsClient:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> "WsClient":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b" 101 " in head and websocket.accept_key(key).encode() in head
        return cls(reader, writer)

    async def send_json(self, obj) -> None:
        self.writer.write(websocket.encode_frame(websocket.TEXT, json.dumps(obj).encode(), mask=os.urandom(4)))
        await self.writer.drain()

    async def receive(self, timeout: float = 20):
        opcode, payload = await asyncio.wait_for(websocket.read_frame(self.reader), timeout)
        if opcode == websocket.TEXT:
            return json.loads(payload)
        (n,) = struct.unpack("!H", payload[:2])
        return json.loads(payload[2 : 2 + n]), payload[2 + n :]

    async def close(self) -> None:
        self.writer.write(websocket.encode_frame(websocket.CLOSE, struct.pack("!H", 1000), mask=os.urandom(4)))
        await self.writer.drain()
        self.writer.close()

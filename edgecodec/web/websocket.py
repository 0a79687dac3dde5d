"""The WebSocket protocol (RFC 6455), server side, for one live-view connection: handshake and frames.

Only what a browser page needs: text and binary messages up to ``MAX_MESSAGE`` bytes, ping/pong and
close. Fragmented client messages are refused (browsers do not fragment small messages).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 64 * 1024


class WebSocketClosed(Exception):
    """The peer closed the connection or broke the protocol."""


def accept_key(client_key: str) -> str:
    return base64.b64encode(hashlib.sha1((client_key + GUID).encode()).digest()).decode()


def handshake_response(client_key: str) -> bytes:
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(client_key)}\r\n\r\n").encode()


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame; servers send unmasked, clients (tests) pass a 4-byte ``mask``."""
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, n)
    if mask:
        return head + mask + _apply_mask(payload, mask)
    return head + payload


def _apply_mask(data: bytes, mask: bytes) -> bytes:
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, unmasked payload) of the next frame; WebSocketClosed on EOF or a protocol error."""
    try:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        if n > MAX_MESSAGE:
            raise WebSocketClosed(f"message of {n} bytes is too large")
        mask = await reader.readexactly(4) if b1 & 0x80 else None
        payload = await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError):
        raise WebSocketClosed("connection closed") from None
    if not b0 & 0x80 or (b0 & 0x0F) == 0:
        raise WebSocketClosed("fragmented messages are not supported")
    return b0 & 0x0F, _apply_mask(payload, mask) if mask else payload

"""Just enough HTTP/1.1 for the live view: parse one GET request, write one response.

Every response closes its connection except the streaming ones (MJPEG, WebSocket), which own it.
"""
from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass, field

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           413: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class HttpError(Exception):
    def __init__(self, status: int, message: str = ""):
        super().__init__(message or REASONS.get(status, ""))
        self.status = status


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request head, or None if the client closed first; HttpError if it is malformed."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(413) from None
    if len(head) > MAX_HEAD:
        raise HttpError(413)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, target, _version = parts
    url = urllib.parse.urlsplit(target)
    headers = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(400, "bad header line")
            headers[name.strip().lower()] = value.strip()
    query = dict(urllib.parse.parse_qsl(url.query))
    return Request(method, urllib.parse.unquote(url.path), query, headers)


def response_head(status: int, content_type: str, length: int | None = None, extra: dict | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", f"Content-Type: {content_type}",
             "Cache-Control: no-store"]
    if length is not None:
        lines += [f"Content-Length: {length}", "Connection: close"]
    for name, value in (extra or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def respond(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str,
                  head_only: bool = False, extra: dict | None = None) -> None:
    writer.write(response_head(status, content_type, len(body), extra))
    if not head_only:
        writer.write(body)
    await writer.drain()


async def respond_error(writer: asyncio.StreamWriter, status: int, message: str = "",
                        extra: dict | None = None) -> None:
    text = f"{status} {REASONS.get(status, '')}\n{message}\n".encode()
    await respond(writer, status, text, "text/plain; charset=utf-8", extra=extra)

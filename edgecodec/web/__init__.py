"""The live view: a web page with every camera's live picture and figures, served by the server itself.

``LiveView`` is the HTTP server, ``feeds`` decodes only what is watched, ``metrics`` renders the
Prometheus text, ``access`` checks viewers' passwords. ``attach`` is how ``edgecodec serve --http``
adds it.
"""
from __future__ import annotations

import asyncio

from edgecodec.errors import ConfigError
from edgecodec.web.access import Viewers
from edgecodec.web.server import LiveView, bind, camera_rows

__all__ = ["LiveView", "Viewers", "attach", "camera_rows", "codec_factory"]


def codec_factory(model=None, threads: int = 1, decoder: str = "auto"):
    """A decoder factory that loads the codec lazily, on the first frame someone watches."""

    def load():
        from edgecodec.codec import Codec

        return Codec.load(model, threads=threads, decoder=decoder)

    return load


def attach(hub, host: str, port: int, model=None, threads: int = 1, viewers: Viewers | None = None,
           ssl_context=None, decoder: str = "auto") -> LiveView:
    """Serve the live view from inside a running event loop; the port is bound before this returns.

    The returned view's ``close()`` is a coroutine (the server awaits it at shutdown).
    """
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot serve the live view on {host}:{port}: {exc.strerror}") from None
    view = LiveView(hub, codec_factory(model, threads, decoder), host, port, sock=sock, viewers=viewers,
                    ssl_context=ssl_context)
    starting = asyncio.get_running_loop().create_task(view.start())
    stop = view.stop

    async def close() -> None:
        await starting
        await stop()

    view.close = close
    return view

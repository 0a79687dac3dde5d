"""How frame packets travel from an edge to a server: one small ``Link`` interface, one class per scheme.

``open_link(config)`` picks the transport from the URL scheme (``tcp://``, ``tls://``, ``mqtt://``,
``mqtts://``), so the edge's sender never knows which one it talks to.
"""
from edgecodec.transport.base import AuthRefused, Link, LinkConfig, LinkError, open_link

__all__ = ["AuthRefused", "Link", "LinkConfig", "LinkError", "open_link"]

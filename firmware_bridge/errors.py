"""Exceptions raised by firmware_bridge; every failure a user or a peer can cause is one of these."""


class BridgeError(Exception):
    """Base class: catch this to handle any firmware_bridge failure."""


class PortError(BridgeError):
    """The serial port or URL cannot be opened, or failed while in use."""


class LinkTimeout(BridgeError):
    """The peer did not answer within the allowed time or number of retries."""


class ProtocolError(BridgeError):
    """A frame or message is malformed, of an unknown version, or breaks the protocol."""


class FrameRejected(BridgeError):
    """The peer refused a frame transfer (too large, bad parameters, or aborted)."""

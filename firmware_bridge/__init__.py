"""Host side of the serial link between an edge camera and its companion microcontroller.

``Link`` (with a ``LinkHandler`` for what arrives) carries framed, CRC-checked, acknowledged messages (triggers, quality commands,
telemetry) and whole compressed frames split into chunks; PROTOCOL.md specifies the wire format
that firmware implements (``c/`` holds a portable C implementation).
"""
from firmware_bridge.errors import BridgeError, FrameRejected, LinkTimeout, PortError, ProtocolError
from firmware_bridge.framing import VERSION as PROTOCOL_VERSION
from firmware_bridge.handler import LinkHandler
from firmware_bridge.link import Link
from firmware_bridge.messages import (QUALITY_UNCHANGED, Hello, Heartbeat, MsgType, Request, SetQuality, Status,
                                      Telemetry, Trigger)
from firmware_bridge.port import open_port

__all__ = ["Link", "LinkHandler", "open_port", "PROTOCOL_VERSION", "BridgeError", "FrameRejected", "LinkTimeout",
           "PortError", "ProtocolError", "Hello", "Heartbeat", "MsgType", "Request", "SetQuality", "QUALITY_UNCHANGED", "Status",
           "Telemetry", "Trigger"]

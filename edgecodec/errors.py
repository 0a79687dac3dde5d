"""Exceptions raised by edgecodec; every failure a user can cause is one of these."""


class EdgecodecError(Exception):
    """Base class: catch this to handle any edgecodec failure."""


class BitstreamError(EdgecodecError):
    """A bitstream or packet is truncated, corrupt, or of an unknown version."""


class ModelMismatchError(BitstreamError):
    """A bitstream was written by a different model than the one decoding it."""


class MissingReferenceError(BitstreamError):
    """A delta frame arrived without the frame it is coded against (joined mid-stream, a lost or
    reordered packet): wait for the next key frame, or ask for one."""


class EntropyCodingError(EdgecodecError):
    """The range coder rejected its input (bad tables, undecodable bytes)."""


class ModelError(EdgecodecError):
    """Model files are missing, malformed, or do not match their manifest."""


class ConfigError(EdgecodecError):
    """A configuration file or option is invalid."""


def not_utf8(path, exc: UnicodeDecodeError) -> ConfigError:
    """The one-line error for a text file (configuration, secrets) that is not UTF-8."""
    return ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})")

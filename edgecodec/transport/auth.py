"""Per-camera secrets, the HMAC proofs built from them, and TLS with a pinned server certificate.

Both sides prove knowledge of the camera's secret: the edge answers the server's challenge, and the
server's WELCOME answers the edge's nonce, so an impostor server cannot make an edge delete its
spool by acknowledging frames it never stored.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pathlib
import ssl
import sys
from typing import Optional

from edgecodec.errors import ConfigError, EdgecodecError, not_utf8
from edgecodec.transport import wire

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 16


class AuthError(EdgecodecError):
    """A peer failed to prove the shared secret, or the server certificate did not match its pin."""


def check_secret(secret: str, where: str = "secret") -> bytes:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{where}: a secret must be a string of at least {MIN_SECRET_LENGTH} characters")
    return secret.encode()


def read_secret_file(path: str) -> bytes:
    try:
        text = pathlib.Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    return check_secret(text, path)


def read_private_toml(path: str, what: str) -> dict:
    """A TOML file that holds secrets: a warning when other users may read it, ConfigError when it cannot
    be read or parsed (``what`` names it in messages, e.g. "secrets file")."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_mode & 0o077:
                log.warning("%s %s is readable by other users (chmod 600 it)", what, path)
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None


def load_secrets(path: str) -> dict[str, bytes]:
    """Read ``[cameras]`` ``camera_id = "secret"`` pairs from a TOML file."""
    doc = read_private_toml(path, "secrets file")
    cameras = doc.get("cameras")
    if not isinstance(cameras, dict) or not cameras:
        raise ConfigError(f"{path}: needs a [cameras] table of camera_id = \"secret\" lines")
    out = {}
    for cid, secret in cameras.items():
        try:
            wire.check_camera_id(cid)
        except EdgecodecError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        out[cid] = check_secret(secret, f"{path}: [cameras] {cid}")
    return out


def _mac(secret: bytes, label: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(secret, label, hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(2, "little"))
        mac.update(part)
    return mac.digest()


def client_proof(secret: bytes, challenge: bytes, hello: wire.Hello) -> bytes:
    return _mac(secret, b"edgecodec-client-1", challenge, hello.nonce, hello.camera_id.encode(),
                hello.model_id, hello.stream_id)


def server_proof(secret: bytes, challenge: bytes, hello: wire.Hello, last_sequence: Optional[int]) -> bytes:
    last = wire.NO_SEQUENCE if last_sequence is None else last_sequence
    return _mac(secret, b"edgecodec-server-1", hello.nonce, challenge, hello.camera_id.encode(),
                last.to_bytes(8, "little"))


def frame_tag(secret: bytes, camera_id: str, stream_id: bytes, packet: bytes) -> bytes:
    """Authenticates one frame sent without a session (MQTT)."""
    return _mac(secret, b"edgecodec-frame-1", camera_id.encode(), stream_id, packet)


def ack_tag(secret: bytes, camera_id: str, stream_id: bytes, sequence: int) -> bytes:
    return _mac(secret, b"edgecodec-ack-1", camera_id.encode(), stream_id, sequence.to_bytes(8, "little"))


def dropped_tag(secret: bytes, camera_id: str, stream_id: bytes, count: int) -> bytes:
    return _mac(secret, b"edgecodec-dropped-1", camera_id.encode(), stream_id, count.to_bytes(4, "little"))


def verify(expected: bytes, got: bytes) -> bool:
    return hmac.compare_digest(expected, got)


# --- TLS ---------------------------------------------------------------------------------

def parse_pin(pin: str) -> bytes:
    """``sha256:AB:CD..`` or plain hex -> 32 bytes of a certificate's SHA-256 fingerprint."""
    text = pin.strip().lower()
    if text.startswith("sha256:"):
        text = text[7:]
    text = text.replace(":", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"TLS pin {pin!r} is not a SHA-256 fingerprint (64 hex digits)")
    return raw


def fingerprint(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()


def certificate_pin(cert_path: str) -> str:
    """The pin an edge should use for the server certificate in ``cert_path`` (PEM)."""
    try:
        pem = pathlib.Path(cert_path).read_text()
        return fingerprint(ssl.PEM_cert_to_DER_cert(pem))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read certificate {cert_path}: {exc}") from None


def client_context(pin: Optional[str] = None, cafile: Optional[str] = None) -> ssl.SSLContext:
    """With a pin, trust exactly that certificate (checked by ``check_pin``); else verify via CAs."""
    if pin:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_pin(sock: ssl.SSLSocket, pin: Optional[str]) -> None:
    if not pin:
        return
    der = sock.getpeercert(binary_form=True) or b""
    if not hmac.compare_digest(hashlib.sha256(der).digest(), parse_pin(pin)):
        raise AuthError(f"server certificate {fingerprint(der)} does not match the pinned {pin}")


def server_context(certfile: str, keyfile: Optional[str] = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {certfile}: {exc}") from None
    return ctx

"""Who may see the live view: HTTP Basic credentials from the ``[viewers]`` table of a TOML file.

Basic authentication is what browsers, VLC/ffplay (``http://user:pass@host/...``) and Prometheus all
speak, so every endpoint of the live view can ask for it. The password crosses the network as sent, so
off a trusted network pair it with ``--http-tls``.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import secrets

from edgecodec.errors import ConfigError
from edgecodec.transport.auth import read_private_toml

REALM = "edgecodec live view"


class Viewers:
    """User name -> password; ``check`` answers whether an Authorization header names one of them."""

    def __init__(self, users: dict[str, str]):
        if not users:
            raise ConfigError("no viewers: the live view would refuse everyone")
        self._users = {name.encode(): password.encode() for name, password in users.items()}
        self._decoy = secrets.token_bytes(16)  # compared for unknown names, so they take as long

    @classmethod
    def load(cls, path: str) -> "Viewers":
        doc = read_private_toml(path, "viewers file")
        table = doc.get("viewers")
        if not isinstance(table, dict) or not table:
            raise ConfigError(f'{path}: needs a [viewers] table of name = "password" lines')
        for name, password in table.items():
            if ":" in name or not name.isprintable():
                raise ConfigError(f"{path}: [viewers] {name!r}: names cannot hold ':' or control characters")
            if not isinstance(password, str) or len(password) < 8:
                raise ConfigError(f"{path}: [viewers] {name}: the password must be a string of 8 or more "
                                  "characters")
        return cls(table)

    def check(self, authorization: str) -> str | None:
        """The viewer's name if ``authorization`` (the header's value) holds valid Basic credentials."""
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return None
        if not sep:
            return None
        expected = self._users.get(name)
        ok = hmac.compare_digest(password, expected if expected is not None else self._decoy)
        return name.decode("utf-8", "replace") if ok and expected is not None else None

    @staticmethod
    def challenge() -> dict[str, str]:
        """The header of a 401 answer that makes clients ask for a name and password."""
        return {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}

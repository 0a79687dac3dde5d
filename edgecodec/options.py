"""Option tables: each option declared once, read from a TOML file and overridden by CLI flags.

A table is a frozen dataclass of sections, each section a frozen dataclass whose fields carry their
default, flag, help and check (``opt``). The TOML reader, the argparse flags and the effective
configuration printed back as TOML are all generated from it. The edge (``edgecodec.edge.config``)
and the server (``edgecodec.server.config``) each declare one table; this module is the machinery
both use, which is why it sits at the bottom of the layer chain (docs/architecture.md).

Option types: ``str``, ``int``, ``float``, ``bool`` and ``list`` (of strings: a TOML array, a flag
given once per item).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from typing import Any, Callable, Iterator, Optional

from edgecodec.errors import ConfigError, not_utf8

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Check = Callable[[Any], Optional[str]]


def opt(default, flag: str, help: str, check: Optional[Check] = None, metavar: Optional[str] = None,
        aliases: tuple = ()):
    """Declare one option; ``check(value)`` returns an explanation when the value is invalid.
    ``aliases``: more flag spellings for the same option."""
    meta = {"flag": flag, "help": help, "check": check, "metavar": metavar, "aliases": tuple(aliases)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be between {lo:g} and {hi:g}"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(repr(c) for c in choices)}"


def host_port(value: str) -> Optional[str]:
    """A check: '' (off) or HOST:PORT with a port 0..65535 (0: any free port)."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT (port 0..65535)"
    return None


def split_host_port(value: str) -> tuple[str, int]:
    """'HOST:PORT' (checked by ``host_port``) -> (host, port); an empty host or [v6] brackets as given."""
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


class OptionTable:
    """The options of one program: ``root`` is the dataclass whose fields are the sections."""

    def __init__(self, root: type, cross_checks: Optional[Callable[[Any], list]] = None,
                 masked: frozenset = frozenset({"secret"})):
        self.root = root
        self.sections: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(root)}
        self.cross_checks = cross_checks
        self.masked = masked  # keys whose values --check-config style output hides

    def options(self) -> Iterator[tuple[str, dataclasses.Field]]:
        for section, cls in self.sections.items():
            for f in dataclasses.fields(cls):
                yield section, f

    def add_arguments(self, parser) -> None:
        """One flag per option; flags given on the command line override the file."""
        for section, f in self.options():
            meta = f.metadata
            kind = field_type(f)
            flags = (meta["flag"], *meta.get("aliases", ()))
            default = default_of(f)
            shown = "none" if default == [] else repr(default)
            group_help = f"{meta['help']} [{section}] {f.name}, default {shown}"
            dest = f"{section}.{f.name}"
            if kind is bool:
                parser.add_argument(*flags, dest=dest, default=argparse.SUPPRESS,
                                    action=argparse.BooleanOptionalAction, help=group_help)
            elif kind is list:
                parser.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, action="append",
                                    metavar=meta["metavar"], help=group_help + " (repeat for more)")
            else:
                parser.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, type=kind,
                                    metavar=meta["metavar"], help=group_help)

    def read_file(self, path: str) -> tuple[dict, list[str]]:
        """Parse a TOML config into {section: {key: value}}; return it with a list of problems."""
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise not_utf8(path, exc) from None
        values: dict[str, dict] = {}
        errors = []
        for section, table in doc.items():
            if section not in self.sections:
                hint = difflib.get_close_matches(section, self.sections, 1)
                errors.append(f"{path}: unknown section [{section}]"
                              + (f" (did you mean [{hint[0]}]?)" if hint else
                                 f"; sections are {', '.join(self.sections)}"))
                continue
            if not isinstance(table, dict):
                errors.append(f"{path}: {section} must be a table: [{section}]")
                continue
            fields = {f.name: f for f in dataclasses.fields(self.sections[section])}
            for key, value in table.items():
                if key not in fields:
                    hint = difflib.get_close_matches(key, fields, 1)
                    errors.append(f"{path}: [{section}] unknown option {key!r}"
                                  + (f" (did you mean {hint[0]!r}?)" if hint else ""))
                    continue
                kind = field_type(fields[key])
                try:
                    values.setdefault(section, {})[key] = coerce(value, kind)
                except TypeError:
                    errors.append(f"{path}: [{section}] {key} = {value!r}: must be {_a(kind)}")
        return values, errors

    def load(self, path: Optional[str] = None, args: Optional[argparse.Namespace] = None,
             cross_checks: bool = True):
        """Defaults, then the TOML file, then CLI flags; raise ConfigError listing every problem."""
        values: dict[str, dict] = {}
        errors: list[str] = []
        if path:
            values, errors = self.read_file(path)
        given_flags = set(vars(args)) if args is not None else set()
        for section, f in self.options():
            dest = f"{section}.{f.name}"
            if dest in given_flags:
                values.setdefault(section, {})[f.name] = getattr(args, dest)
        sections = {}
        for section, cls in self.sections.items():
            given = values.get(section, {})
            for f in dataclasses.fields(cls):
                check = f.metadata["check"]
                value = given.get(f.name, default_of(f))
                problem = check(value) if check else None
                if problem:
                    origin = ("flag " + f.metadata["flag"] if f"{section}.{f.name}" in given_flags
                              else f"[{section}] {f.name}")
                    errors.append(f"{origin} = {value!r}: {problem}")
            sections[section] = cls(**given)
        config = self.root(**sections)
        if cross_checks and self.cross_checks is not None:
            errors += self.cross_checks(config)
        if errors:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
        return config

    def to_toml(self, config) -> str:
        """The effective configuration as TOML (secrets masked)."""
        lines = []
        for section in self.sections:
            lines.append(f"[{section}]")
            for f in dataclasses.fields(self.sections[section]):
                value = getattr(getattr(config, section), f.name)
                if f.name in self.masked and value:
                    value = "********"
                lines.append(f"{f.name} = {toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def field_type(f: dataclasses.Field) -> type:
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"str": str, "int": int, "float": float, "bool": bool, "list": list}[name.split("[")[0]]


def coerce(value: Any, kind: type) -> Any:
    """TOML value -> option type; integers are accepted where a float is expected."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise TypeError
    if kind in (int, str) and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TypeError
    if kind is float and not isinstance(value, float):
        raise TypeError
    if kind is list and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise TypeError
    return value


def _a(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list of strings"}[kind]

"""Command-line entry point: a thin shell that dispatches to one module per subcommand.

Each module in ``COMMANDS`` exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the default. Library errors become a one-line message and exit code 1;
usage errors exit 2 (argparse's convention); Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edgecodec import __version__
from edgecodec.errors import EdgecodecError

COMMANDS = [
    # one entry per subcommand module in edgecodec/cli/
    "codec_cmds",
    "bridge",
    "edge",
    "serve",
    "demo",
    "export",
    "repair",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecodec",
        description="Learned image codec for edge cameras: encode, decode, stream, record.",
    )
    parser.add_argument("--version", action="version", version=f"edgecodec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"edgecodec.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except EdgecodecError as exc:
        print(f"edgecodec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

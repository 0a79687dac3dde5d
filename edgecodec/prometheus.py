"""Prometheus text exposition format 0.0.4, written by hand: the few lines the edge's and the server's
/metrics need (docs/architecture.md says why prometheus_client is not used)."""
from __future__ import annotations

from typing import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict, object]]) -> list[str]:
    """The lines of one metric: HELP, TYPE, then one line per (labels, value)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {number(value)}" if text else f"{name} {number(value)}")
    return lines


def render(families: Iterable[list[str]]) -> str:
    return "\n".join(line for lines in families for line in lines) + "\n"

"""The C monitor (box_agent/monitor/monitor.h) and the Python one share their figures.

C cannot import Python, so monitor.h writes each figure a second time. This test reads its
#defines and holds them to the Python names they copy: a change on one side only fails here,
in the unit tier, instead of as a behaviour difference between the two monitors.
"""
from __future__ import annotations

import ast
import operator
import re
from pathlib import Path

from box_agent import runlog
from box_agent.monitor import loop, process

HEADER = Path(loop.__file__).with_name("monitor.h")
_DEFINE = re.compile(r"^#define\s+([A-Z_][A-Z0-9_]*)\s+(.+?)\s*(?:/\*.*)?$")
_OPS = {ast.LShift: operator.lshift, ast.Mult: operator.mul, ast.Add: operator.add,
        ast.Sub: operator.sub}


def _value(expr: str) -> int:
    """An integer #define's value: literals (with C's L/LL/U suffixes), parentheses, <<, *, +, -.
    Anything else is a figure this test does not know how to read, and says so."""
    tree = ast.parse(re.sub(r"\b(\d+)[uUlL]+\b", r"\1", expr), mode="eval")

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return int(_OPS[type(node.op)](walk(node.left), walk(node.right)))
        raise ValueError(f"monitor.h: can't read {expr!r}")

    return walk(tree.body)


def defines() -> dict[str, int]:
    found = {}
    for line in HEADER.read_text().splitlines():
        match = _DEFINE.match(line)
        if match and re.match(r"^[\d(]", match.group(2)):
            found[match.group(1)] = _value(match.group(2))
    return found


def python_figures() -> dict[str, int]:
    """Each figure monitor.h copies, as the Python side has it (durations in ms)."""
    figures = {
        "WINDOW": loop.WINDOW,
        "PIPE_BYTES": loop.PIPE_BYTES,
        "SEGMENT_BYTES": runlog.SEGMENT_BYTES,
        "SWEEP_GRACE_MS": round(process.SWEEP_GRACE * 1000),
        "SCAN_EVERY_MS": round(process.SCAN_EVERY * 1000),
        "LINGER_MS": round(loop.LINGER * 1000),
        "AGENTLESS_GRACE_MS": round(loop.AGENTLESS_GRACE * 1000),
        "STDOUT_STREAM": runlog.STDOUT,
        "STDERR_STREAM": runlog.STDERR,
    }
    if hasattr(runlog, "DEFAULT_LIMIT"):
        figures["LOG_LIMIT"] = runlog.DEFAULT_LIMIT
    return figures


def test_the_reader_reads_what_monitor_h_writes() -> None:
    assert _value("(4LL << 20)") == 4 * 1024 * 1024
    assert _value("500") == 500
    assert _value("(1 << 20)") == 1 << 20


def test_monitor_h_has_the_python_monitors_figures() -> None:
    in_c = defines()
    wanted = python_figures()
    # LOG_LIMIT may leave the header (the log limit becoming configurable); while it is there,
    # it must be runlog's default.
    optional = {"LOG_LIMIT"}
    missing = set(wanted) - set(in_c) - optional
    assert not missing, f"monitor.h no longer defines {sorted(missing)}"
    if "LOG_LIMIT" in in_c:
        assert "LOG_LIMIT" in wanted, "monitor.h's LOG_LIMIT has no runlog.DEFAULT_LIMIT to match"
    differ = {name: (in_c[name], value) for name, value in wanted.items()
              if name in in_c and in_c[name] != value}
    assert not differ, f"monitor.h (C, Python) disagree: {differ}"

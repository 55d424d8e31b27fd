"""Human formatting of `--list` rows (the box sends data; the CLI formats)."""
from __future__ import annotations

import time

TYPE_CHECKING = False  # typing costs ~5 ms of a short command's start (issue 13)
if TYPE_CHECKING:
    from typing import Any


def describe_state(row: dict[str, Any]) -> str:
    if row["state"] == "lost":  # its monitor died (a box reboot): the script is gone too
        return "lost (exit code unknown: its monitor died)"
    if row["state"] == "exited":
        return "timed out (124)" if row.get("timed_out") else f"exited ({row['exit_code']})"
    pause = row.get("pause")
    if row["state"] == "paused" and pause:
        label = f' "{pause["label"]}"' if pause.get("label") else ""
        left = pause.get("remaining")
        wait = "no auto-resume" if left is None else f"{left:.0f}s left"
        console = ", console" if pause.get("console") else ""
        number = f"pause #{pause['seq']}, " if pause.get("seq") is not None else ""
        return f"paused{label} at {pause['file']}:{pause['line']} ({number}{wait}{console})"
    return "running"


def describe_resume(row: dict[str, Any]) -> str:
    last = row.get("last_resume")
    if not last:
        return ""
    who = last.get("by") or "auto-resume"
    return f"last resume: {last['how']} by {who}"


def format_runs(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs on this box"
    lines = []
    for row in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started_at"]))
        who = row["started_by"]
        owner = f"{who.get('key') or who.get('user')} {who.get('fingerprint')}"
        extra = "; ".join(x for x in (f"fleet {row['fleet']}" if row.get("fleet") else "",
                                      describe_resume(row)) if x)
        lines.append(f"{row['short_id']:<8} {row['script']:<20} {describe_state(row):<48} "
                     f"{owner}  {started}" + (f"  ({extra})" if extra else ""))
    return "\n".join(lines)

"""`--junit-xml FILE`, written with junitparser: one testsuite for the fleet run, one testcase
per box (unique per box: GitLab keeps only the first of a duplicate), properties first."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from lager.errors import UsageError

from . import recap
from .targets import Fleet

BODY_LIMIT = 64 * 1024  # the last 64 KiB of stderr in a failure body
OUT_LIMIT = 4 * 1024  # system-out stays short and names the full log


def _tail(data: bytes) -> str:
    return data[-BODY_LIMIT:].decode("utf-8", "replace")


def check_writable(path: str) -> None:
    """Before any box starts: a report that cannot be written is a usage error (exit 2), not a
    surprise after the scripts ran."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"--junit-xml {path}: is a directory; give a file name")
    if not parent.is_dir():
        raise UsageError(f"--junit-xml {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists()
                                                    and not os.access(target, os.W_OK)):
        raise UsageError(f"--junit-xml {path}: not writable")


def write_junit(path: str, fleet_id: str, fleet: Fleet, script: str, rows: list[recap.Row],
                stderr: dict[str, bytes], output_dir: str | None) -> None:
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

    suite = TestSuite(f"lager python {script}")
    suite.hostname = socket.gethostname()
    suite.timestamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    # Properties first (some readers stop at the first testcase).
    suite.add_property("fleet", fleet_id)
    suite.add_property("target", fleet.expression)
    for row in rows:
        case = TestCase(script, classname=f"lager.{row.group or 'fleet'}.{row.box}",
                        time=round(row.seconds, 3))
        if row.state == recap.FAILED or row.state == recap.KILLED:
            failure = Failure(f"exit {row.exit}")
            failure.text = _tail(stderr.get(row.box, b""))
            case.result = [failure]
        elif row.state in (recap.UNREACHABLE, recap.TIMEOUT, recap.LOST):
            what = f"exit {row.exit}" if row.state == recap.TIMEOUT else row.state
            error = Error(f"{what}: {row.reason}".strip(": ")[:1000], row.state)
            error.text = _tail(stderr.get(row.box, b"")) or row.reason
            case.result = [error]
        elif row.state in (recap.SKIPPED, recap.RESERVED):
            case.result = [Skipped(row.reason or "never started")]
        where = f"{output_dir}/{row.box}.stdout" if output_dir else \
            f"lager python --reattach {row.run_id} --box {row.box}" if row.run_id else ""
        if row.run_id:
            told = f"run {row.run_id} on {row.box}; full log: {where}"
        else:  # never started (unreachable, reserved, skipped): no run to name
            told = f"{row.box}: no run" + (f"; output: {where}" if where else "")
        case.system_out = told[:OUT_LIMIT]
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.write(path, pretty=True)

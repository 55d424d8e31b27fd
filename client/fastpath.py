"""`lager python --continue ID [--box B]` without loading click.

This is the command an engineer runs from anywhere to resume a paused bench, and its latency is
a stated target (no more than 1.5x OpenSSH `ssh -s continue`). Python itself starts in ~20 ms,
click's import alone costs ~55 ms, paramiko's ~100 ms. So when the box's connection keeper is
up (client/mux.py), this exact command form is answered here in a few imports; any other form,
or no keeper, falls through to the full click CLI, which behaves the same.
"""
from __future__ import annotations

import os
import sys


def _parse(argv: list[str]) -> tuple[str, str | None] | None:
    """(id, box) for exactly `python --continue ID [--box B]` in any order, else None."""
    if not argv or argv[0] != "python":
        return None
    run_id = box = None
    rest = argv[1:]
    while rest:
        flag = rest.pop(0)
        name, eq, value = flag.partition("=")
        if name not in ("--continue", "--box"):
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if name == "--continue":
            run_id = (run_id is None and value) or None
            if run_id is None:
                return None
        else:
            box = value
    if not run_id or not run_id.strip() or "\n" in run_id:
        return None
    return run_id.strip(), box or os.environ.get("LAGER_BOX")


def try_continue(argv: list[str]) -> int | None:
    """The exit code when answered here; None to fall through to the click CLI."""
    parsed = _parse(argv)
    if parsed is None or not parsed[1]:
        return None
    from lager import protocol
    from lager.errors import LagerError

    from . import mux
    from .config import Config

    if not mux.enabled():
        return None
    config = Config()
    try:
        box = config.boxes().get(parsed[1])
    except (LagerError, OSError):  # a damaged config gets the full CLI's error message
        return None
    if box is None:
        return None
    try:
        answer = mux.request(mux.socket_path(config, box), box.name, protocol.SUB_CONTINUE,
                             parsed[0], None)
    except LagerError as exc:  # the keeper may have forwarded it: never re-sent, 255
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    if answer is None:
        return None
    out, err, status = answer
    if status == 0:
        sys.stdout.write(out)
        return 0
    sys.stderr.write(f"Error: {err.strip() or 'continue failed'}\n")
    return 1

"""The `lager` entry point: the click-free fast paths first (client/fastpath.py: the short
commands, without click or paramiko; client/script_fastpath.py: a run's common form, without
click), then the full CLI."""
from __future__ import annotations

import os
import sys

from . import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED


def _leave(code: int) -> None:
    """Exit once a short command has answered, or a run has ended, without the interpreter's
    teardown.

    Freeing every loaded module (the quick client's crypto among them) took 10 to 14 ms of a
    60 to 90 ms `--continue` (issue 13); nothing is left to do by then: the answer is written,
    a keeper left behind is its own process, and no thread of the fast path holds work. A run
    (client/script_fastpath.py) has closed its connection, joined paramiko's thread and stopped
    serving the keeper socket before it returns its code. So the two streams are flushed and
    the process ends as `ssh` does, at once."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # `lager nets | head -1`: quiet, as the answer's own write
        code = EXIT_BROKEN_PIPE
    try:
        sys.stderr.flush()
    except OSError:
        pass  # nowhere left to say anything
    os._exit(code)


def main() -> None:
    try:
        from . import lean_imports

        lean_imports.pathlib()  # before anything imports pathlib: without urllib.parse (~3 ms)
        from .fleet.route import inventory_to_env, rewrite_box_id, wants_fleet

        argv = rewrite_box_id(sys.argv[1:]) or sys.argv[1:]  # `--continue BOX:ID`: one box
        if wants_fleet(argv):  # a set `--box` (issue 18): the fleet package, never below
            from .fleet.cli import main as fleet_main

            sys.exit(fleet_main(argv))
        sys.argv[1:] = argv = inventory_to_env(argv)  # one box: the flag as the env var
        from .fastpath import try_fast

        code = try_fast(sys.argv[1:])
        if code is not None:
            _leave(code)
        from .script_fastpath import try_script  # `lager python SCRIPT`, its common form

        code = try_script(sys.argv[1:])
        if code is not None:
            _leave(code)  # the run's connection and threads are closed by now: no teardown
        from .cli import main as cli_main  # click and the commands load only past this point

        cli_main()
    except KeyboardInterrupt:
        # Ctrl-C before the CLI's own handling is in place (importing, the fast path): the
        # same quiet 130 as everywhere else, never a traceback.
        sys.exit(EXIT_INTERRUPTED)

"""The `lager` entry point: the click-free fast path first, then the full CLI."""
from __future__ import annotations

import sys

from .fastpath import try_continue


def main() -> None:
    code = try_continue(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from .cli import main as cli_main  # click and the commands load only past this point

    cli_main()

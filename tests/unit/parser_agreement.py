"""Where a hand-written fast parser and click's real one mean different things by an argv:
the check both fast paths' unit tests make (client/fastpath.py, client/script_fastpath.py)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def disagreements(argvs: list[list[str]], fast: Callable[[list[str]], Any | None],
                  slow: Callable[[list[str]], Any]) -> tuple[int, list[Any]]:
    """How many of argvs the fast parser answers (not None), and (argv, fast's meaning,
    click's) wherever click means something else."""
    answered, problems = 0, []
    for argv in argvs:
        meant = fast(argv)
        if meant is None:
            continue
        answered += 1
        clicks = slow(argv)
        if clicks != meant:
            problems.append((argv, meant, clicks))
    return answered, problems

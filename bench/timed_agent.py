"""`lager-box`, timed from the inside, for bench/reservation_bench.py only.

The same agent (box_agent.cli's `main`) with three clocks added around a run's start, so the
bench can time it where the reservation is spent instead of through a client whose own noise
is larger than the cost (#19 review): for each `run` request, one JSON line in the file named
by LAGER_BENCH_TIMINGS:
- `start`: the agent's run handler entered -> the run exists (the supervisor started it), in
  the agent's own clock. It holds everything the reservation adds to a start; the script's
  interpreter start, the same either way, is left out.
- `take`: the time inside the reservation's own calls during that start (check, begin_run,
  run_started); `release`: inside run_ended, at the run's end.

Run as the agent: python bench/timed_agent.py serve --listen ... (LAGER_BENCH_TIMINGS set).
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from box_agent.cli import main
from box_agent.reservations import Reservations
from box_agent.subsystems import HANDLERS
from box_agent.supervisor import Supervisor

OUT = Path(os.environ["LAGER_BENCH_TIMINGS"])
_now = time.perf_counter


class Clock:
    entered = 0.0
    take = 0.0


def _record(**fields: float) -> None:
    with open(OUT, "a") as f:
        f.write(json.dumps(fields) + "\n")


def _taking(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = _now()
        try:
            return method(*args, **kwargs)
        finally:
            Clock.take += _now() - began
    return timed


def _install() -> None:
    handle_run = HANDLERS["run"]

    async def timed_run(ctx: Any) -> None:
        Clock.entered, Clock.take = _now(), 0.0
        await handle_run(ctx)

    HANDLERS["run"] = timed_run
    for name in ("check", "begin_run", "run_started"):
        setattr(Reservations, name, _taking(getattr(Reservations, name)))
    run_ended = Reservations.run_ended

    def timed_end(self: Reservations, run: Any) -> None:
        began = _now()
        run_ended(self, run)
        _record(release=_now() - began)

    Reservations.run_ended = timed_end  # type: ignore[method-assign]
    start = Supervisor.start

    async def timed_start(self: Supervisor, *args: Any, **kwargs: Any) -> Any:
        run = await start(self, *args, **kwargs)
        took = _now() - Clock.entered
        # The handler calls run_started as soon as this returns, in the same turn of the
        # loop: the line is written on the next turn, so `take` has it.
        asyncio.get_running_loop().call_soon(lambda: _record(start=took, take=Clock.take))
        return run

    Supervisor.start = timed_start  # type: ignore[method-assign]


if __name__ == "__main__":
    _install()
    main()

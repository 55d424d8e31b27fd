"""The console's statement runner: a Ctrl-C that comes before the runner has started the
statement (Enter, then Ctrl-C at once) stops it all the same; one that comes after it ended
touches nothing."""
from __future__ import annotations

import threading

from lager.console.runner import Job, Runner


def _runner() -> tuple[Runner, list[str]]:
    shown: list[str] = []
    return Runner({}, shown.append), shown


def test_an_interrupt_before_the_statement_starts_means_it_never_runs() -> None:
    runner, shown = _runner()
    gate = threading.Event()
    # Keep the runner's thread busy, so the next job is queued and not started.
    runner.interp.locals["gate"] = gate
    busy = Job(compile("gate.wait(30)", "<console>", "single"), "gate.wait(30)")
    runner.submit(busy)
    job = Job(compile("ran = True", "<console>", "single"), "ran = True")
    runner.submit(job)
    assert runner.interrupt(job, KeyboardInterrupt)  # taken: it has not started
    assert not runner.interrupt(job, KeyboardInterrupt)  # said once
    gate.set()
    assert job.done.wait(30)
    assert "ran" not in runner.interp.locals
    assert "KeyboardInterrupt\n" in shown
    assert job.events.get(timeout=5) == "done"
    runner.stop()


def test_an_interrupt_after_the_statement_ended_is_refused() -> None:
    runner, shown = _runner()
    job = Job(compile("x = 1", "<console>", "single"), "x = 1")
    runner.submit(job)
    assert job.done.wait(30)
    assert not runner.interrupt(job, KeyboardInterrupt)
    assert runner.interp.locals["x"] == 1 and "KeyboardInterrupt\n" not in shown
    runner.stop()

"""Shared boxes (#19): how the box's reservation reads in a terminal.

A's run is paused and A has locked the box too; B and C, two laptops whose keys carry the same
comment (lager's own `lager:user@host`), queue under CI. A refused run says `Error:` as every
refused change does; the place line names the first holder and how many more, not all of
them; `lager boxes status` says the run is paused, and tells B's and C's places apart by
their keys' fingerprints.
"""
from __future__ import annotations

import signal

from conftest import make_client, start_run, write_script
from two_keys import (
    QUICK,
    Pair,
    env_of,
    fingerprint,
    hold_box,
    pair_fixture,  # noqa: F401 (the fixture `pair`)
    refused_naming,
    run_row,
)


def test_refusals_places_and_status_read_well(pair: Pair) -> None:
    c = make_client(pair.root / "c", pair.agent)
    b_key, c_key = fingerprint(pair.b), fingerprint(c)
    assert b_key != c_key
    run, ident = hold_box(pair)
    a_key = run_row(pair.a, ident)["started_by"]["fingerprint"]
    quick = write_script(pair.root, "quick.py", QUICK.format(name="B"))

    # A refused run and a refused change both read `Error: box reserved: ...`.
    ran = refused_naming(pair.b.run("python", str(quick)), a_key, ident)
    changed = refused_naming(pair.b.run("supply", "supply2", "voltage", "3"), a_key, ident)
    assert ran.startswith("Error: box reserved: held by ") and ran.count("Error:") == 1, ran
    assert changed.startswith("Error: box reserved: held by "), changed

    # A locks the box as well: two holds, A's lock first.
    locked = pair.a.run("boxes", "lock", "--reason", "scope on the DUT")
    assert locked.returncode == 0, locked.stderr
    waiters = []
    for laptop in (pair.b, c):  # B in the queue before C comes
        waiters.append(start_run(env_of(laptop, CI="true", LAGER_LOCK_WAIT="300"), quick))
        waiters[-1].err.wait_for("waiting for the box")
    try:
        place = next(line for line in waiters[0].err.text.splitlines() if "waiting for" in line)
        # The first hold and how many more: one holder's words, not every holder's.
        assert place.count("held by") == 1 and "(+1 more)" in place, place
        assert "scope on the DUT" in place and a_key in place, place

        shown = pair.b.run("boxes", "status")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        [header] = [line for line in lines if f"run {ident}" in line and " by " in line]
        assert header.startswith("box mybox: paused run ") and '"A holds the box"' in header
        assert "running" not in header, header
        queue = [line for line in lines if line.startswith("queue ")]
        assert len(queue) == 2, shown.stdout
        # Same key comment, told apart by fingerprint, in arrival order.
        assert b_key in queue[0] and c_key in queue[1], queue
        assert queue[0].split(" (")[0].split(": ", 1)[1] == \
            queue[1].split(" (")[0].split(": ", 1)[1]
    finally:
        for waiter in waiters:
            waiter.proc.send_signal(signal.SIGINT)  # leaves the queue
            waiter.finish(timeout=60)
        assert pair.a.run("boxes", "unlock").returncode == 0
        assert pair.a.run("python", "--continue", ident).returncode == 0
        assert run.finish(timeout=60) == 0

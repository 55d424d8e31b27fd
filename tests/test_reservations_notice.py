"""Shared boxes (#19, ISSUE-NOTES 18): another key on someone's run is told to the run's own
terminal; a waiter that loses its box comes back to the queue.

- B opens a console on A's paused run, continues it and kills it (all open to every key
  holder): A's attached `lager python` gets one line from the box for each, naming B's key
  and fingerprint, as a NOTICE record, so its byte offsets stay exact (checked across an agent
  restart, against an OpenSSH attach's copy of the run's output). A plain OpenSSH client
  following the run gets nothing new.
- A CI waiter whose agent restarts (`serve --replace`, or a stop and start) says so in one line
  and queues again, within its wait, instead of exiting 255.
"""
from __future__ import annotations

import json
import signal
import subprocess
from typing import Any

import pytest
from conftest import Client, LiveRun, start_agent, start_run, wait_for, write_script
from sshclients import openssh
from two_keys import (
    Pair,
    env_of,
    fingerprint,
    hold_box,
    pair_fixture,  # noqa: F401 (the fixture `pair`)
    rows,
    run_row,
)

RESERVED = 75

WATCHED = """\
import sys
from lager import pause
print("before", flush=True)
print("err-before", file=sys.stderr, flush=True)
pause("first", interactive=True, timeout=600)
print("middle", flush=True)
print("err-middle", file=sys.stderr, flush=True)
try:
    pause("second", timeout=600)
except KeyboardInterrupt:
    print("killed", flush=True)
    print("err-killed", file=sys.stderr, flush=True)
    sys.exit(3)
"""



def plain_attach(client: Client, run_id: str) -> subprocess.Popen[bytes]:
    """OpenSSH's `ssh -s attach`, the plain form: the run's stdout and stderr as they are."""
    cmd = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
           "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={client.known_hosts}",
           "-i", str(client.key_path), "-p", str(client.agent.port), "-T", "-s",
           f"lab@{client.agent.host}", "attach"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(f"{run_id}\n".encode())
    proc.stdin.flush()
    return proc


def told(text: str, doing: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("lager: ") and doing in line]


def audit_of(pair: Pair) -> list[dict[str, Any]]:
    """The box's audit log, one JSON record a line (none yet: no file)."""
    path = pair.agent.state_dir / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def audited(pair: Pair, event: str) -> list[dict[str, Any]]:
    return [record for record in audit_of(pair) if record["event"] == event]


def test_the_holders_terminal_is_told_and_its_offsets_stay_exact(pair: Pair) -> None:
    b_key = fingerprint(pair.b)
    script = write_script(pair.root, "watched.py", WATCHED)
    run = start_run(pair.a, script)
    ident = run.banner_id()
    run.err.wait_for("err-before")
    plain = plain_attach(pair.a, ident)  # A's second terminal, over plain OpenSSH

    # B opens a console on A's paused run: open to every key holder, and A is told.
    console = pair.b.run("python", "--console", ident, input="6 * 7\n")
    assert console.returncode == 0, console.stderr
    assert "42" in console.stdout
    run.err.wait_for("opened a console on run")
    [line] = told(run.err.text, "opened a console on run")
    assert b_key in line and ident in line

    # B resumes it: told too, before the resume line.
    resumed = pair.b.run("python", "--continue", ident)
    assert resumed.returncode == 0, resumed.stderr
    run.err.wait_for("err-middle")
    [line] = told(run.err.text, "resumed run")
    assert b_key in line and "(--continue)" in line
    assert run.err.text.index(line) < run.err.text.index("err-middle")
    run.err.wait_for("second")

    # The agent restarts: A's client reconnects at the byte counts it has, which the notices
    # must not be part of; the plain client's copy ends here, with none of them in it.
    pair.restart(kill=False)
    plain_out, plain_err = plain.communicate(timeout=60)
    assert plain_out == b"before\nmiddle\n"
    assert b"opened a console" not in plain_err and b"resumed run" not in plain_err
    assert b"err-before\n" in plain_err and b"err-middle\n" in plain_err
    run.err.wait_for("reconnected")

    # B follows it too (--reattach, here OpenSSH's plain attach): open to every key holder,
    # A is told.
    watcher = plain_attach(pair.b, ident)
    run.err.wait_for("is watching run")
    [line] = told(run.err.text, "is watching run")
    assert b_key in line and "(--reattach)" in line

    # B kills it: told, and A's run ends with the script's own code.
    killed = pair.b.run("python", "--kill", ident)
    assert killed.returncode == 0, killed.stderr
    assert run.finish(timeout=60) == 3, run.err.text
    [line] = told(run.err.text, "sent --kill to run")
    assert b_key in line
    watched_out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 3 and watched_out.endswith(b"killed\n")

    # The box's audit: each of B's acts on A's run, once, by B's key, on A's run.
    row = run_row(pair.a, ident)
    a_key = row["started_by"]["fingerprint"]
    for event in ("console", "continue", "reattach", "kill"):
        [record] = audited(pair, event)
        assert record["by"] == f"key:{b_key}" and record["owner"] == f"key:{a_key}", record
        assert record["run"] == row["id"], record

    # Byte for byte what the run wrote: A's stdout, and A's stderr without lager's own lines
    # (the notices and the reconnect's), against an OpenSSH attach's full copy of the log.
    full = openssh(pair.a, "attach", f"{ident}\n")
    assert full.returncode == 3, full.stderr
    assert run.out.text == full.stdout.decode() == "before\nmiddle\nkilled\n"
    shown = "".join(line + "\n" for line in run.err.text.splitlines()
                    if not line.startswith("lager: "))
    assert shown == full.stderr.decode()
    assert b"opened a console" not in full.stderr and b"--kill" not in full.stderr


PLAIN_PAUSE = """\
from lager import pause
print("pausing", flush=True)
pause("no console here", timeout=600)
print("resumed", flush=True)
"""


def test_a_refused_console_or_kill_is_neither_audited_nor_told(pair: Pair) -> None:
    """B's `ssh -s console` on a pause without a console, and B's kill with a signal the box
    does not know, are refused (status 1) and did nothing: no audit record, and A's terminal
    is not told. B's --continue afterwards is both, and A is told it first: anything the
    refusals had told A would be in A's stderr before it."""
    b_key = fingerprint(pair.b)
    run = start_run(pair.a, write_script(pair.root, "plain.py", PLAIN_PAUSE))
    ident = run.banner_id()

    console = openssh(pair.b, "console", f"{ident}\n")
    assert console.returncode == 1, console.stderr
    assert b"without a console" in console.stderr
    bad_signal = openssh(pair.b, "kill", f"{ident} SIGNOPE\n")
    assert bad_signal.returncode == 1, bad_signal.stderr
    assert b"unknown signal" in bad_signal.stderr
    assert audit_of(pair) == []

    resumed = pair.b.run("python", "--continue", ident)
    assert resumed.returncode == 0, resumed.stderr
    run.err.wait_for("resumed run")
    assert run.finish(timeout=60) == 0, run.err.text
    assert run.out.text == "pausing\nresumed\n"
    [line] = [line for line in run.err.text.splitlines() if line.startswith("lager: ")
              and b_key in line]
    assert "resumed run" in line, run.err.text
    assert [record["event"] for record in audit_of(pair)] == ["continue"]


def test_the_runs_own_key_tells_nobody(pair: Pair) -> None:
    """A's own second terminal continuing A's run is the spec's flow: no line about it."""
    script = write_script(pair.root, "watched.py", WATCHED)
    run = start_run(pair.a, script)
    ident = run.banner_id()
    assert pair.a.run("python", "--continue", ident).returncode == 0
    run.err.wait_for("err-middle")
    run.banner_id()
    assert pair.a.run("python", "--kill", ident).returncode == 0
    assert run.finish(timeout=60) == 3
    for doing in ("opened a console", "resumed run", "sent --kill", "is watching"):
        assert not told(run.err.text, doing), run.err.text


@pytest.mark.parametrize("how", ["replace", "restart"])
def test_a_waiter_that_loses_its_box_queues_again(pair: Pair, how: str) -> None:
    holder, ident = hold_box(pair)
    quick = write_script(pair.root, "quick.py", "print('B ran', flush=True)\n")
    job = env_of(pair.b, CI="true", LAGER_LOCK_WAIT="300")
    waiting = start_run(job, quick)
    waiting.err.wait_for("waiting for the box")
    if how == "replace":
        old = pair.agent
        pair.agent = start_agent(pair.root / "state", "--replace", listen="127.0.0.1:0")
        pair.a.agent = pair.b.agent = pair.agent
        old.proc.wait(30)
    else:
        pair.restart(kill=False)
    waiting.err.wait_for("queueing again")
    # Back in the new agent's queue, behind A's run, which survived the restart.
    wait_for_count(waiting, "waiting for the box", 2)
    assert "B ran" not in waiting.out.text
    assert pair.a.run("python", "--continue", ident).returncode == 0
    assert waiting.finish(timeout=60) == 0, waiting.err.text
    assert waiting.out.text == "B ran\n"
    assert len([line for line in waiting.err.text.splitlines() if "queueing again" in line]) \
        == 1
    holder.proc.send_signal(signal.SIGINT)
    holder.finish(timeout=60)


def test_a_waiter_whose_box_stays_away_gives_up_within_its_wait(pair: Pair) -> None:
    holder, _ = hold_box(pair)
    quick = write_script(pair.root, "quick.py", "print('B ran', flush=True)\n")
    waiting = start_run(pair.b, quick, "--wait", "3")
    waiting.err.wait_for("waiting for the box")
    pair.agent.stop(keep_runs=False)  # and no agent comes back
    code = waiting.finish(timeout=60)
    assert code not in (0, RESERVED) and "B ran" not in waiting.out.text
    assert "queueing again" in waiting.err.text
    holder.proc.kill()  # it would go on reconnecting to the box that is gone
    holder.finish(timeout=60)


def wait_for_count(run: LiveRun, needle: str, count: int) -> None:
    wait_for(lambda: run.err.text.count(needle) >= count, 60, what=f"{count} x {needle!r}")


def test_waiters_keep_their_order_across_a_restart(pair: Pair) -> None:
    """The box keeps its waiters' places through a restart: the first waiter, back last,
    still goes first."""
    holder, ident = hold_box(pair)
    job = env_of(pair.b, CI="true", LAGER_LOCK_WAIT="300")
    first = start_run(job, write_script(pair.root, "first.py", "print('first ran')\n"))
    first.err.wait_for("waiting for the box")
    second = start_run(job, write_script(pair.root, "second.py", "print('second ran')\n"))
    second.err.wait_for("waiting for the box")
    first.proc.send_signal(signal.SIGSTOP)  # so it comes back after the second one
    try:
        pair.restart(kill=False)
        second.err.wait_for("queueing again")
        wait_for_count(second, "waiting for the box", 2)
    finally:
        first.proc.send_signal(signal.SIGCONT)
    first.err.wait_for("queueing again")
    wait_for_count(first, "waiting for the box", 2)
    # Back, the first is ahead of the second again (A's run, then the first).
    wait_for(lambda: "2 runs ahead" in second.err.text.splitlines()[-1], 60,
             what=f"the second behind the first:\n{second.err.text}")
    assert pair.a.run("python", "--continue", ident).returncode == 0
    assert first.finish(timeout=60) == 0, first.err.text
    assert second.finish(timeout=60) == 0, second.err.text
    started = {row["script"].rsplit("/", 1)[-1]: row["started_at"] for row in rows(pair.b)}
    assert started["first.py"] < started["second.py"]
    assert holder.finish(timeout=60) == 0

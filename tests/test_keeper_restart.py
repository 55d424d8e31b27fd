"""Short requests through a keeper whose connection died with the box's agent (issues 11 and
13, ISSUE-NOTES 9): the agent restarts (SIGTERM then start, `serve --replace`, SIGKILL then
start) and the very next `--continue`, `--list`, `--kill` or instrument command works the first
time; a `continue` whose answer was lost is retried directly with its pause number, so it never
resumes the pause after the one it was meant for; the keeper logs in again so the call after
that needs no handshake."""
from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import (
    Agent,
    Client,
    keeper_processes,
    laptop_on_a_new_box,
    runs_by_id,
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from holding_proxy import HoldingProxy
from keeper_rig import (
    keeper_socket_path,
    keeper_sockets,
    laptop_behind_a_holding_proxy,
    pin_pause,
)
from sshclients import openssh

# Each pause leaves a file behind once it is resumed: what the box did, seen without asking it.
PAUSER = ("import pathlib, sys\nfrom lager import pause\nfor i in range(4):\n"
          "    print('at', i, flush=True)\n    pause('p', timeout=0)\n"
          "    pathlib.Path(sys.argv[1], f'resumed-{i + 1}').touch()\nprint('done')\n")
HOW = ("sigterm", "replace", "sigkill")


def restart(box: Agent, how: str) -> Agent:
    """The box's agent restarted as an upgrade or a crash would; the same port after."""
    if how == "replace":
        new = start_agent(box.state_dir, "--replace", listen="127.0.0.1:0")
        box.proc.wait(30)  # it goes once it has handed over
        assert new.port == box.port
        return new
    box.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    box.proc.wait(30)
    return start_agent(box.state_dir, listen=f"127.0.0.1:{box.port}")


def pause_of(client: Client, run_id: str) -> int | None:
    row = runs_by_id(client)[run_id]
    return row["pause"]["seq"] if row["state"] == "paused" else None


def _one(found: list[int]) -> list[int] | None:
    return found if len(found) == 1 else None


def spare_ready(client: Client) -> bool:
    """One keeper, idle, with its channel opened ahead (client/keeper_channels.py) ready: its
    threads are its main one, its transport's, its console server's and its pauses watch's
    (client/pause_table.py); a request's thread
    and the one opening the next spare are gone. A request sent now goes out at once, so
    holding the link holds its answer, not the channel's opening."""
    found = keeper_processes(client)
    return bool(keeper_sockets(client)) and len(found) == 1 and \
        len(list(Path(f"/proc/{found[0]}/task").iterdir())) == 4


def logins(box: Agent) -> int:
    return box.log().count(" succeeded")


def detached_pauser(tmp: Path, client: Client) -> str:
    started = client.run("python", str(write_script(tmp, "p.py", PAUSER)), "--detach",
                         str(tmp))
    assert started.returncode == 0, started.stderr
    run_id = wait_for(lambda: next(iter(runs_by_id(client)), None), what="the run")
    wait_for(lambda: pause_of(client, run_id) == 1, what="the first pause")
    return run_id


def keeper_serves_again(client: Client, box: Agent) -> bool:
    """A --list answered with no new login: the keeper is back on the new agent."""
    before = logins(box)
    listed = client.run("python", "--list")
    return listed.returncode == 0 and listed.stderr == "" and logins(box) == before


@pytest.mark.parametrize("how", HOW)
def test_the_first_request_after_a_restart_works_through_a_stale_keeper(
        tmp_path: Path, how: str) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        run_id = detached_pauser(tmp_path, laptop)
        # The keeper the --list calls left (a spare one started meanwhile sees it and goes).
        [keeper] = wait_for(lambda: _one(keeper_processes(laptop)), what="one keeper")

        laptop.agent = restart(laptop.agent, how)
        resumed = laptop.run("python", "--continue", run_id[:8])
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith("resumed run"), resumed.stdout
        assert resumed.stderr.count("\n") <= 1  # at most the line saying it went direct
        wait_for(lambda: pause_of(laptop, run_id) == 2, what="the second pause")

        # The keeper logged in again (the same process: no second keeper), so the next
        # requests need no handshake.
        wait_for(lambda: keeper_serves_again(laptop, laptop.agent), 30, what="the keeper back")
        # A spare keeper a direct call started may show for a moment, until it sees ours.
        wait_for(lambda: keeper_processes(laptop) == [keeper], 30, what="the same keeper alone")
        before = logins(laptop.agent)
        again = laptop.run("python", "--continue", run_id[:8])
        assert again.returncode == 0 and again.stderr == "", again.stderr
        wait_for(lambda: pause_of(laptop, run_id) == 3, what="the third pause")
        nets = laptop.run("nets", "--json")
        assert nets.returncode == 0 and json.loads(nets.stdout), nets.stderr
        assert logins(laptop.agent) == before

        # --kill and an instrument read, first thing after another restart of the same kind.
        laptop.agent = restart(laptop.agent, how)
        read = laptop.run("supply", "supply1", "--json")
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout)["net"] == "supply1", read.stdout
        killed = laptop.run("python", "--kill", run_id[:8])
        assert killed.returncode == 0 and killed.stdout.startswith("stopping run"), killed.stderr
        wait_for(lambda: runs_by_id(laptop)[run_id]["state"] == "exited", 30, what="the run's end")
    wait_for(lambda: not keeper_processes(laptop), 30, what="the keeper to go with its box")


@pytest.mark.parametrize("how", HOW)
def test_an_attached_runs_keeper_across_a_restart_and_openssh_after_it(
        tmp_path: Path, how: str) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        run = start_run(laptop, write_script(tmp_path, "p.py", PAUSER), str(tmp_path))
        short = run.banner_id()
        wait_for(lambda: keeper_sockets(laptop), what="the run's keeper")
        run_id = next(iter(runs_by_id(laptop)))

        laptop.agent = restart(laptop.agent, how)
        resumed = laptop.run("python", "--continue", short)  # the run's link is down or re-made
        assert resumed.returncode == 0 and resumed.stdout.startswith("resumed run"), \
            resumed.stderr
        wait_for(lambda: pause_of(laptop, run_id) == 2, what="the second pause")

        # OpenSSH after the restart: a stale pause number is answered "already resumed" (exit
        # 0, stdout), and the bare id resumes the current pause.
        stale = openssh(laptop, "continue", f"{run_id}#1\n")
        assert stale.returncode == 0, stale.stderr
        assert stale.stdout.decode().startswith("already resumed: run"), stale.stdout
        assert pause_of(laptop, run_id) == 2
        bare = openssh(laptop, "continue", f"{short}\n")
        assert bare.returncode == 0 and bare.stdout.startswith(b"resumed run"), bare.stderr
        wait_for(lambda: pause_of(laptop, run_id) == 3, what="the third pause")
        assert laptop.run("python", "--continue", short).returncode == 0
        wait_for(lambda: pause_of(laptop, run_id) == 4, what="the fourth pause")
        assert laptop.run("python", "--continue", short).returncode == 0
        assert run.finish(60) == 0
        assert run.out.text.count("at ") == 4 and run.out.text.endswith("done\n")


def test_a_bare_continue_is_pinned_to_the_current_pause_by_the_keeper(tmp_path: Path) -> None:
    """What the lost answer's retry carries: the pause number, asked through the keeper."""
    with laptop_on_a_new_box(tmp_path) as laptop:
        run_id = detached_pauser(tmp_path, laptop)
        path = keeper_socket_path(laptop)
        wait_for(path.exists, what="the keeper's socket")
        # From the keeper's table of pauses, the id as typed (client/pause_table.py); from the
        # box's list while the table is not in yet, the full id.
        assert pin_pause(path, "mybox", run_id[:6]) in (f"{run_id[:6]}#1",
                                                                       f"{run_id}#1")
        assert pin_pause(path, "mybox", f"{run_id}#7") == f"{run_id}#7"
        assert pin_pause(path, "mybox", "ffffffffff") == "ffffffffff"  # no such run
        assert laptop.run("python", "--kill", run_id).returncode == 0
        wait_for(lambda: pause_of(laptop, run_id) is None, what="the run's end")
        # Not paused: bare (once the table has the run's end, which may trail the list's).
        wait_for(lambda: pin_pause(path, "mybox", run_id) == run_id,
                 what="no number for a run that ended")


@pytest.mark.parametrize("how", ("sigkill", "sigterm"))
def test_a_lost_answer_is_retried_with_its_number_and_resumes_once(
        tmp_path: Path, how: str) -> None:
    """The keeper forwards `continue ID#1`, the box acts on it and its answer is held on the
    link; the agent then restarts and the link drops. The client asks again directly with the
    number: "already resumed", exit 0, and the run went one pause further, not two."""
    with laptop_behind_a_holding_proxy(tmp_path) as (box, proxy, laptop):
        run_id = detached_pauser(tmp_path, laptop)
        wait_for(lambda: spare_ready(laptop), what="the keeper, idle")
        proxy.hold_all(towards_client_only=True)
        asked = laptop.popen("python", "--continue", f"{run_id}#1", stdin=subprocess.DEVNULL)
        wait_for((tmp_path / "resumed-1").exists, what="the box to act on it")
        restart_under_a_held_answer(box, laptop, proxy, how)
        out, err = asked.communicate(timeout=120)
        assert asked.returncode == 0, err
        assert out.startswith(f"already resumed: run {run_id[:4]}"), out
        # The link drops when the old agent dies, so the retry may meet the restart's gap: then
        # one more line says it waits for the box.
        notices = err.splitlines()
        assert "asked directly" in notices[-1] and len(notices) <= 2, err
        assert all(line.startswith("lager: ") for line in notices), err
        wait_for(lambda: pause_of(laptop, run_id) == 2, what="the second pause")
        assert not (tmp_path / "resumed-2").exists()  # resumed once, not twice


def restart_under_a_held_answer(box: Agent, laptop: Client, proxy: HoldingProxy,
                                how: str) -> None:
    """Once box's answer is held on the proxy: box restarted (`how`), the laptop pointed at the
    new agent through the proxy (so stop `laptop.agent` at the end), the link cut."""
    wait_for(lambda: proxy.held_bytes > 0, what="the box's answer on the held link")
    laptop.agent = replace(restart(box, how), port=proxy.port)
    proxy.cut_all()


def box_lost_the_answer_to(asked: subprocess.Popen[str], box: Agent, laptop: Client,
                           proxy: HoldingProxy) -> None:
    """restart_under_a_held_answer by SIGKILL while `asked` waits: the request may have reached
    the box, so it ends with one line saying so, exit 255, nothing on stdout."""
    restart_under_a_held_answer(box, laptop, proxy, "sigkill")
    out, err = asked.communicate(timeout=120)
    assert asked.returncode == 255 and out == "", err
    assert err.count("\n") == 1 and "may have reached the box" in err, err


def test_a_lost_instrument_write_is_not_sent_again(tmp_path: Path) -> None:
    """A supply set whose answer was lost may have happened: one line, exit 255, not twice."""
    with laptop_behind_a_holding_proxy(tmp_path) as (box, proxy, laptop):
        assert laptop.run("nets").returncode == 0
        wait_for(lambda: keeper_sockets(laptop), what="the keeper's socket")
        assert laptop.run("nets").returncode == 0  # through the keeper: its spare opens
        wait_for(lambda: spare_ready(laptop), what="the keeper, idle")
        proxy.hold_all(towards_client_only=True)
        asked = laptop.popen("supply", "supply1", "voltage", "1.5", "--yes",
                             stdin=subprocess.DEVNULL)
        box_lost_the_answer_to(asked, box, laptop, proxy)


SIGNAL_COUNTER = """
import pathlib, signal, sys, time
seen = pathlib.Path(sys.argv[1], "usr1")
signal.signal(signal.SIGUSR1, lambda *_: seen.open("a").write("usr1\\n"))
pathlib.Path(sys.argv[1], "ready").touch()
while not pathlib.Path(sys.argv[1], "stop").exists():
    time.sleep(0.05)
"""


def test_a_lost_kill_is_not_sent_again(tmp_path: Path) -> None:
    """`--kill ID --signal USR1` whose answer was lost: one line, 255, and one signal only."""
    with laptop_behind_a_holding_proxy(tmp_path) as (box, proxy, laptop):
        script = write_script(tmp_path, "count.py", SIGNAL_COUNTER)
        assert laptop.run("python", str(script), "--detach", str(tmp_path)).returncode == 0
        wait_for((tmp_path / "ready").exists, what="the script's handler")
        run_id = next(iter(runs_by_id(laptop)))  # through the keeper the direct call left
        wait_for(lambda: spare_ready(laptop), what="the keeper, idle")
        proxy.hold_all(towards_client_only=True)
        asked = laptop.popen("python", "--kill", run_id, "--signal", "USR1",
                             stdin=subprocess.DEVNULL)
        wait_for((tmp_path / "usr1").exists, what="the signal")
        box_lost_the_answer_to(asked, box, laptop, proxy)
        assert (tmp_path / "usr1").read_text() == "usr1\n"
        (tmp_path / "stop").touch()
        wait_for(lambda: runs_by_id(laptop)[run_id]["state"] == "exited", 30, what="the run's end")
        assert (tmp_path / "usr1").read_text() == "usr1\n"


def test_a_box_gone_for_good_fails_after_a_bounded_wait_and_its_keeper_goes(
        tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        assert laptop.run("python", "--list").returncode == 0
        wait_for(lambda: keeper_sockets(laptop), what="the keeper's socket")
    listed = laptop.run("python", "--list")
    assert listed.returncode == 255 and listed.stdout == ""
    lines = listed.stderr.splitlines()
    assert lines[-1].startswith("Error: ") and len(lines) <= 3, listed.stderr
    assert all(line.startswith("lager: ") for line in lines[:-1]), listed.stderr
    wait_for(lambda: not keeper_processes(laptop), 30, what="the keeper to give up")


@pytest.mark.parametrize("line", ["abc#", "abc#x", "#1", "abc#1#2"])
def test_bad_pause_numbers_get_one_line(client: Client, line: str) -> None:
    result = client.run("python", "--continue", line)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error:"), result.stderr

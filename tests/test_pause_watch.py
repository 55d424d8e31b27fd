"""The `pauses` subsystem and the standalone keeper that numbers a bare `--continue` from it
(issue 13's last slow-link row, ISSUE-NOTES 9): the keeper keeps the box's paused runs from the
watch and sends `ID#N` in the same exchange, with no `list` first. What the box was asked is
read from its own log (`-vv` names each channel's subsystem), never from the client."""
from __future__ import annotations

import asyncio
import getpass
import json
import random
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import asyncssh
import paramiko
from conftest import (
    Agent,
    Client,
    cannot_run,
    keeper_processes,
    laptop_on_a_new_box,
    make_client,
    runs_by_id,
    start_agent,
    wait_for,
    write_script,
)
from holding_proxy import HoldingProxy
from keeper_rig import PAUSES_THREE_TIMES, keeper_socket_path, pin_pause
from openssh_rig import Sshd, keygen
from sshclients import openssh, paramiko_connect
from test_keeper_restart import spare_ready

from client.pause_table import PauseTable
from lager.protocol.events import PauseNotice, ResumeNotice
from lager.protocol.pauses import PauseSnapshot, decode_watch_record

DEBUG = "-v"  # with the rig's own -v: the agent logs each channel's subsystem (-vv)


def asked(box: Agent, subsystem: str) -> int:
    """How many `subsystem` channels the box's agent has served so far, from its log."""
    return box.log().count(f" {subsystem} request by ")


def paused_at(client: Client, run_id: str) -> int | None:
    row = runs_by_id(client)[run_id]
    return row["pause"]["seq"] if row["state"] == "paused" else None


def detached(client: Client, tmp: Path, body: str = PAUSES_THREE_TIMES, name: str = "p.py") -> str:
    started = client.run("python", str(write_script(tmp, name, body)), "--detach")
    assert started.returncode == 0, started.stderr
    return started.stdout.split()[2]  # "started run ID (detached)"


def table_pins(client: Client, typed: str, seq: int) -> bool:
    """The laptop's keeper numbers `typed` from its table: the id comes back as typed (a
    number from the box's list would carry the full id)."""
    path = keeper_socket_path(client)
    return path.exists() and \
        pin_pause(path, "mybox", typed) == f"{typed}#{seq}"


def test_a_standalone_keeper_numbers_a_bare_continue_without_asking_the_list(
        tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path, DEBUG) as laptop:
        run_id = detached(laptop, tmp_path)
        wait_for(lambda: paused_at(laptop, run_id) == 1, what="the first pause")
        wait_for(lambda: keeper_processes(laptop), what="the keeper the --list left")
        typed = run_id[:8]
        wait_for(lambda: table_pins(laptop, typed, 1), what="the keeper's table")
        assert asked(laptop.agent, "pauses") >= 1

        lists, continues = asked(laptop.agent, "list"), asked(laptop.agent, "continue")
        resumed = laptop.run("python", "--continue", typed)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith(f"resumed run {typed[:4]}"), resumed.stdout
        assert resumed.stderr == ""
        # One request reached the box: the continue. No list, no new login.
        assert asked(laptop.agent, "continue") == continues + 1
        assert asked(laptop.agent, "list") == lists
        assert paused_at(laptop, run_id) == 2  # pause 1 was resumed, and only it

        # The table follows the box: the next bare continue is numbered 2, again without a list.
        wait_for(lambda: table_pins(laptop, typed, 2), what="pause 2 in the table")
        lists = asked(laptop.agent, "list")
        again = laptop.run("python", "--continue", typed)
        assert again.returncode == 0 and again.stdout.startswith("resumed run"), again.stderr
        assert asked(laptop.agent, "list") == lists
        assert paused_at(laptop, run_id) == 3


def _laptop_and_proxy(tmp_path: Path) -> tuple[Agent, HoldingProxy, Client, Client]:
    """An agent (logging its requests), a holding proxy, a laptop behind it, and the same
    laptop reaching the agent directly (box 'direct', LAGER_MUX=0; OpenSSH too)."""
    box = start_agent(tmp_path / "state", DEBUG)
    proxy = HoldingProxy((box.host, box.port))
    laptop = make_client(tmp_path / "laptop", replace(box, port=proxy.port))
    # The same key (a reserved box refuses other keys' runs), straight to the agent.
    added = laptop.run("boxes", "add", "direct", "--host", box.host, "--port", str(box.port),
                       box=False)
    assert added.returncode == 0, added.stderr
    other = Client(laptop.config_dir, box, box="direct")
    other.env["LAGER_MUX"] = "0"
    return box, proxy, laptop, other


def test_a_stale_table_gets_already_resumed_never_the_next_pause(tmp_path: Path) -> None:
    box, proxy, laptop, other = _laptop_and_proxy(tmp_path)
    try:
        run_id = detached(laptop, tmp_path)
        typed = run_id[:8]
        wait_for(lambda: paused_at(laptop, run_id) == 1, what="the first pause")  # a keeper
        wait_for(lambda: keeper_processes(laptop), what="the keeper")
        wait_for(lambda: table_pins(laptop, typed, 1), what="the keeper's table")

        wait_for(lambda: spare_ready(laptop), what="the keeper, idle")
        # The keeper's link stops delivering: its table keeps pause 1 while another engineer
        # (OpenSSH, straight to the box) resumes it and the script pauses again at 2.
        proxy.hold_all(towards_client_only=True)
        by_openssh = openssh(other, "continue", f"{run_id}#1\n")
        assert by_openssh.returncode == 0 and by_openssh.stdout.startswith(b"resumed run"), \
            by_openssh.stderr
        wait_for(lambda: paused_at(other, run_id) == 2, what="the second pause")
        assert table_pins(laptop, typed, 1)  # stale, as the keeper still sees it

        continues = asked(box, "continue")
        late = laptop.popen("python", "--continue", typed, stdin=subprocess.DEVNULL)
        wait_for(lambda: asked(box, "continue") == continues + 1, what="the keeper's continue")
        proxy.release_all()
        out, err = late.communicate(timeout=60)
        assert late.returncode == 0, err
        assert out.startswith("already resumed: run ") and out.endswith(" pause 1\n"), (out, err)
        assert err == ""
        assert paused_at(other, run_id) == 2  # never pause 2
        wait_for(lambda: table_pins(laptop, typed, 2), what="the table caught up")
    finally:
        proxy.close()
        box.stop()


def test_a_run_the_table_does_not_know_yet_is_numbered_from_the_list(tmp_path: Path) -> None:
    box, proxy, laptop, other = _laptop_and_proxy(tmp_path)
    try:
        first = detached(laptop, tmp_path)
        wait_for(lambda: paused_at(laptop, first) == 1, what="the first pause")  # a keeper
        wait_for(lambda: keeper_processes(laptop), what="the keeper")
        wait_for(lambda: table_pins(laptop, first[:8], 1), what="the keeper's table")

        # A run started and paused while the keeper's link is held: its pause is not in the
        # table, so the keeper asks the box's list, and the continue still works.
        wait_for(lambda: spare_ready(laptop), what="the keeper, idle")
        proxy.hold_all(towards_client_only=True)
        second = detached(other, tmp_path, name="q.py")
        wait_for(lambda: paused_at(other, second) == 1, what="the new run's pause")
        lists = asked(box, "list")
        resumed = laptop.popen("python", "--continue", second[:8], stdin=subprocess.DEVNULL)
        wait_for(lambda: asked(box, "list") == lists + 1, what="the keeper's list")
        proxy.release_all()
        out, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0 and out.startswith("resumed run"), err
        wait_for(lambda: paused_at(other, second) == 2, what="the new run's second pause")
        assert paused_at(other, first) == 1  # the other run untouched
    finally:
        proxy.close()
        box.stop()


def test_openssh_reads_the_snapshot_and_each_change(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        run_id = detached(laptop, tmp_path)
        wait_for(lambda: paused_at(laptop, run_id) == 1, what="the first pause")
        ssh = subprocess.Popen(
            ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={laptop.known_hosts}",
             "-i", str(laptop.key_path), "-p", str(laptop.agent.port), "-T", "-s",
             f"lab@{laptop.agent.host}", "pauses"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert ssh.stdout is not None
            snapshot = json.loads(ssh.stdout.readline())
            assert snapshot["op"] == "snapshot" and snapshot["v"] >= 2
            assert [(p["run_id"], p["seq"]) for p in snapshot["paused"]] == [(run_id, 1)]
            assert isinstance(decode_watch_record(json.dumps(snapshot)), PauseSnapshot)

            assert laptop.run("python", "--continue", run_id[:8]).returncode == 0
            resumed = decode_watch_record(ssh.stdout.readline())
            assert isinstance(resumed, ResumeNotice)
            assert (resumed.run_id, resumed.seq, resumed.how) == (run_id, 1, "continue")
            paused = decode_watch_record(ssh.stdout.readline())
            assert isinstance(paused, PauseNotice) and (paused.run_id, paused.seq) == (run_id, 2)
            assert paused.banner is None and paused.file.endswith("p.py")

            # The run killed while paused: its pause is over ("gone").
            assert laptop.run("python", "--kill", run_id[:8], "--signal", "KILL").returncode == 0
            gone = decode_watch_record(ssh.stdout.readline())
            assert isinstance(gone, ResumeNotice) and (gone.seq, gone.how) == (2, "gone")
        finally:
            ssh.kill()  # ours: the ssh process this test started
            ssh.wait(10)


MANY_QUICK_PAUSES = ("from lager import pause\nfor i in range(600):\n"
                     "    pause('quick pause with a long label ' + 'x' * 200, timeout=0.01)\n"
                     "print('done')\n")


class _NeverReads(asyncssh.SSHClientSession[bytes]):
    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:  # type: ignore[override]
        self.chan = chan
        self.got = 0
        self.closed = asyncio.Event()
        chan.pause_reading()  # takes nothing: the window it gave fills and stays full

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.got += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


WATCH_WINDOW = 16 * 1024


def test_a_watcher_that_never_reads_is_dropped_and_the_box_stays_well(tmp_path: Path) -> None:
    async def watch_without_reading(laptop: Client) -> None:
        async with asyncssh.connect(laptop.agent.host, laptop.agent.port, username="lab",
                                    known_hosts=None, client_keys=[str(laptop.key_path)],
                                    agent_path=None) as conn:
            _, session = await conn.create_session(_NeverReads, subsystem="pauses",
                                                   encoding=None, window=WATCH_WINDOW,
                                                   max_pktsize=WATCH_WINDOW)
            run_id = await asyncio.to_thread(detached, laptop, tmp_path, MANY_QUICK_PAUSES)
            await asyncio.to_thread(
                wait_for, lambda: "dropped a pauses watcher that did not read"
                in laptop.agent.log(), 120, 0.05, "the box to drop the watcher")
            listed = await asyncio.to_thread(runs_by_id, laptop)
            assert run_id in listed  # the box answers as before
            # Reading again, it gets what its window let through, then the close: the lines
            # the box held back for it were thrown away.
            session.chan.resume_reading()
            await asyncio.wait_for(session.closed.wait(), 60)
            assert 0 < session.got <= 2 * WATCH_WINDOW

    with laptop_on_a_new_box(tmp_path) as laptop:
        asyncio.run(watch_without_reading(laptop))
        assert "Traceback" not in laptop.agent.log()


REFUSED = b"the pauses subsystem takes no input; open it and read\n"


def _generated_garbage(count: int) -> list[bytes]:
    """Seeded hostile input: random bytes, control characters, JSON lookalikes, long lines."""
    rng = random.Random(1913)
    cases = [b"hello\n", b"\x00\xff" * 3000, b'{"op": "snapshot", "v": 2}\n', b"\n",
             b"\x1b[2J\r\n", "7f3a\u2026e9#1\n".encode(), b"x" * 70000]
    while len(cases) < count:
        size = rng.choice((1, 2, 17, 4096, 40000))
        cases.append(bytes(rng.randrange(256) for _ in range(size)))
    return cases


def test_a_watcher_that_sends_anything_is_refused_in_one_line(tmp_path: Path) -> None:
    with laptop_on_a_new_box(tmp_path) as laptop:
        ssh = paramiko_connect(laptop)
        try:
            transport = ssh.get_transport()
            assert transport is not None
            for garbage in _generated_garbage(40):
                chan = transport.open_session()
                chan.invoke_subsystem("pauses")
                try:
                    chan.sendall(garbage)
                    chan.shutdown_write()
                except OSError:
                    pass  # the box may refuse before it has all been sent
                out = chan.makefile("rb").read()
                err = chan.makefile_stderr("rb").read()
                assert (chan.recv_exit_status(), err) == (1, REFUSED), garbage[:40]
                assert isinstance(decode_watch_record(out.splitlines()[0]), PauseSnapshot)
                chan.close()
        finally:
            ssh.close()
        by_openssh = openssh(laptop, "pauses", b"\x00garbage\n")
        assert (by_openssh.returncode, by_openssh.stderr) == (1, REFUSED), by_openssh
        assert laptop.run("python", "--list").returncode == 0
        assert "Traceback" not in laptop.agent.log()


def test_after_the_agent_restarts_the_keeper_watches_again(tmp_path: Path) -> None:
    """The keeper's connection dies with the agent; once it has logged in again it opens the
    watch on the new agent, and a bare continue is again numbered without a list."""
    with laptop_on_a_new_box(tmp_path, DEBUG) as laptop:
        run_id = detached(laptop, tmp_path)
        typed = run_id[:8]
        wait_for(lambda: paused_at(laptop, run_id) == 1, what="the first pause")
        [keeper] = wait_for(lambda: keeper_processes(laptop), what="the keeper")
        wait_for(lambda: table_pins(laptop, typed, 1), what="the keeper's table")

        old = laptop.agent
        old.proc.send_signal(signal.SIGTERM)  # ours: the agent this test started
        old.proc.wait(30)
        laptop.agent = start_agent(old.state_dir, DEBUG, listen=f"127.0.0.1:{old.port}")
        wait_for(lambda: asked(laptop.agent, "pauses") == 1, 30, what="the watch, again")
        wait_for(lambda: table_pins(laptop, typed, 1), what="the table from the new agent")
        assert keeper_processes(laptop) == [keeper]  # the same keeper, logged in again
        lists = asked(laptop.agent, "list")
        resumed = laptop.run("python", "--continue", typed)
        assert resumed.returncode == 0 and resumed.stdout.startswith("resumed run"), \
            resumed.stderr
        assert asked(laptop.agent, "list") == lists
        assert paused_at(laptop, run_id) == 2


def test_a_server_without_the_subsystem_leaves_no_table(tmp_path: Path) -> None:
    """OpenSSH's sshd stands in for an agent from before `pauses`: it refuses the subsystem,
    the table stops watching and never numbers anything, so the keeper asks the list."""
    if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
        cannot_run("OpenSSH's sshd is not installed")
    key = keygen(tmp_path / "key")
    sshd = Sshd(tmp_path / "sshd", [key])
    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a throwaway server of ours
    try:
        ssh.connect("127.0.0.1", sshd.port, username=getpass.getuser(), key_filename=str(key),
                    look_for_keys=False, allow_agent=False)
        transport = ssh.get_transport()
        assert transport is not None
        table = PauseTable(transport).start()
        wait_for(table.ended.is_set, 30, what="the table to give up")
        assert not table.ready and table.pin("7f3a") is None
        assert "subsystem request for pauses by user" in sshd.log_path.read_text()  # refused
        assert transport.is_active()  # the refusal cost the connection nothing
    finally:
        ssh.close()
        sshd.stop()

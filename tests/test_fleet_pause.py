"""Breakpoints on five real boxes: one aggregated line, Enter resumes the boxes paused when it
is pressed (an early Enter skips nothing), `--continue BOX:ID` one run, `--continue f-…` from
another process the rest, and each box's own auto-resume."""
from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StreamReader, wait_for, write_script
from test_fleet_rig import Rig, start_rig

ALL = "bench[01-05]"
LINE = re.compile(r"=== 5/5 paused at \S*\.py:(\d+) \"check the DUT\" +resume: Enter, or "
                  r"lager python --continue (f-[0-9a-f]{4})")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = start_rig(tmp_path_factory.mktemp("fleetpause"), 5)
    yield r
    r.stop()


def _script(tmp: Path, gate: Path | None = None, timeout: str = "0") -> Path:
    wait = f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n" if gate else ""
    return write_script(tmp, "p.py", "import os, time\nfrom lager import pause\n"
                        "print('before', flush=True)\n" + wait +
                        f"pause('check the DUT', timeout={timeout})\nprint('after')\n")


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_fleet_left_behind() -> Iterator[None]:
    """A failing test must not leave its `lager` waiting on boxes that are gone."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class Fleet:
    def __init__(self, rig: Rig, *args: str) -> None:
        self.proc = rig.laptop.popen("python", *args, "--box", ALL)
        STARTED.append(self.proc)
        self.out = StreamReader(self.proc.stdout)
        self.err = StreamReader(self.proc.stderr)

    def enter(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def all_paused(self) -> str:
        wait_for(lambda: LINE.search(self.err.text), 60, what=f"5/5 paused:\n{self.err.text}")
        match = LINE.search(self.err.text)
        assert match is not None
        self.since = match.end()
        return match.group(2)

    def then(self, needle: str) -> str:
        """Wait for a line printed after all five paused."""
        wait_for(lambda: needle in self.err.text[self.since:], 30,
                 what=f"{needle!r} after 5/5:\n{self.err.text}")
        line = next(ln for ln in self.err.text[self.since:].splitlines() if needle in ln)
        return line

    def finish(self) -> tuple[int, str, str]:
        code = self.proc.wait(60)
        return code, self.out.join(), self.err.join()


def _paused(rig: Rig) -> dict[str, list[dict[str, object]]]:
    done = rig.laptop.run("python", "--list", "--json", "--box", ALL)
    rows = json.loads(done.stdout)
    return {box: [r for r in runs if r["state"] == "paused"] for box, runs in rows.items()}


def test_one_line_and_enter_resumes_all_five_an_early_enter_skips_nothing(
        rig: Rig, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    fleet = Fleet(rig, str(_script(tmp_path, gate)))
    wait_for(lambda: fleet.out.text.count("before") == 5, 60, what="five runs started")
    fleet.enter()  # nothing is paused yet: this Enter must resume nothing, now or later
    fleet.err.wait_for("nothing is paused", 30)
    gate.touch()
    fleet.all_paused()
    assert all(len(p) == 1 for p in _paused(rig).values())  # the early Enter skipped nothing
    assert "=== lager breakpoint" not in fleet.err.text  # the line replaces the banners
    fleet.enter()
    code, out, err = fleet.finish()
    assert code == 0, err
    assert sorted(ln for ln in out.splitlines() if ln.endswith("after")) == \
        [f"bench0{i}: after" for i in range(1, 6)]
    assert len(re.findall(r"^bench0[1-5] +ok +exit=0 .* pauses=1", err, re.M)) == 5, err


def test_continue_one_box_then_the_fleet_from_another_process(rig: Rig, tmp_path: Path) -> None:
    fleet = Fleet(rig, str(_script(tmp_path)))
    fleet_id = fleet.all_paused()
    run_id = _paused(rig)["bench03"][0]["short_id"]
    one = rig.laptop.run("python", "--continue", f"bench03:{run_id}")
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith(f"resumed run {run_id}")
    assert "(running: bench03)" in fleet.then("=== 4/5 paused at")
    rest = rig.laptop.run("python", "--continue", fleet_id)  # no --box: the fleet's record
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.strip() == f"resumed {fleet_id} on bench[01-02,04-05]"
    code, out, err = fleet.finish()
    assert code == 0, err
    assert out.count("after") == 5
    again = rig.laptop.run("python", "--continue", fleet_id)
    assert again.returncode == 0 and "nothing paused" in again.stdout


def test_each_box_keeps_its_own_auto_resume(rig: Rig, tmp_path: Path) -> None:
    fleet = Fleet(rig, str(_script(tmp_path, timeout="1 + int(os.environ['LAGER_FLEET_INDEX'])")),
                  "--output-dir", str(tmp_path / "out"))
    code, out, err = fleet.finish()
    assert code == 0, err
    assert out.count("after") == 5
    for i in range(1, 6):
        saved = (tmp_path / "out" / f"bench0{i}.stderr").read_text()
        # Once each: the notice's banner text stands where the box's bytes were.
        assert saved.count("=== lager breakpoint") == 1, saved
        assert saved.count(f"=== auto-resumed after {i}s") == 1, saved
    assert "=== lager breakpoint" not in err


def test_continue_all_resumes_only_this_keys_runs(rig: Rig, tmp_path: Path) -> None:
    """Another key's run paused on bench02 (its own laptop, tests/two_keys.py's WAITER):
    `--continue all` resumes only this key's runs, `--any-owner` that one too, and the box's
    audit records who resumed whose run."""
    from conftest import make_client, start_run
    from two_keys import WAITER

    other = make_client(tmp_path / "other", rig.agents["bench02"])
    theirs = start_run(other, write_script(tmp_path, "theirs.py", WAITER.format(name="B")))
    try:
        theirs_id = theirs.banner_id(60)
        mine = rig.laptop.popen("python", str(_script(tmp_path)), "--box", "bench[01,03-05]")
        STARTED.append(mine)
        err = StreamReader(mine.stderr)
        StreamReader(mine.stdout)
        err.wait_for("=== 4/4 paused at", 60)
        done = rig.laptop.run("python", "--continue", "all", "--box", ALL)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "resumed every paused run of yours on bench[01,03-05]"
        assert mine.wait(60) == 0, err.join()
        row = next(r for r in json.loads(other.run("python", "--list", "--json").stdout)
                   if r["short_id"] == theirs_id or r["id"] == theirs_id)
        assert row["state"] == "paused", row  # the other key's run was left alone
        rest = rig.laptop.run("python", "--continue", "all", "--box", ALL, "--any-owner")
        assert rest.returncode == 0, rest.stderr
        assert rest.stdout.strip() == "resumed every paused run on bench02"
        assert theirs.finish(60) == 0
    finally:
        if theirs.proc.poll() is None:
            theirs.proc.kill()
    audit = [json.loads(ln) for ln in (rig.agents["bench02"].state_dir / "audit.log")
             .read_text().splitlines()]
    resumed = [r for r in audit if r["event"] == "continue" and r["run"] == row["id"]]
    assert len(resumed) == 1 and resumed[0]["by"] != resumed[0]["owner"], audit


def test_on_a_terminal_the_line_is_redrawn_in_place(rig: Rig, tmp_path: Path) -> None:
    import os

    proc, master, seen = _fleet_on_a_terminal(rig, _script(tmp_path))
    wait_for(lambda: b"=== 5/5 paused at" in seen, 60, what=f"5/5 on the terminal: {seen!r}")
    text = bytes(seen)
    # Each change clears the line and draws the new count in place; only the first draw
    # follows a newline (the fleet's own first line).
    assert text.count(b"\r\x1b[K=== ") >= 4, text
    assert text.count(b"\n=== ") == 1, text
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(60) == 0
    os.close(master)


def test_console_by_box_id_and_kill_by_fleet_id(rig: Rig, tmp_path: Path) -> None:
    script = write_script(tmp_path, "i.py", "from lager import pause\nanswer = 42\n"
                          "pause('check the DUT', timeout=0, interactive=True)\nprint('after')\n")
    fleet = Fleet(rig, str(script))
    fleet_id = fleet.all_paused()
    run_id = _paused(rig)["bench04"][0]["short_id"]
    console = rig.laptop.run("python", "--console", f"bench04:{run_id}", input="print(answer)\n")
    assert console.returncode == 0, console.stderr
    assert "42" in console.stdout
    killed = rig.laptop.run("python", "--kill", fleet_id)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.count("stopping run") == 5
    code, out, err = fleet.finish()
    assert code == 130, err  # each script ended by the SIGINT of the stop, as for one box
    assert "after" not in out


def test_openssh_continue_of_one_box_shows_in_the_line(rig: Rig, tmp_path: Path) -> None:
    """The other side is OpenSSH: `ssh -s continue` resumes one box's pause; the fleet's line
    follows, and Enter resumes the other four."""
    import shutil

    from conftest import cannot_run

    ssh = shutil.which("ssh")
    if ssh is None:
        cannot_run("OpenSSH's ssh is not installed")
    fleet = Fleet(rig, str(_script(tmp_path)))
    fleet.all_paused()
    run = _paused(rig)["bench05"][0]
    agent = rig.agents["bench05"]
    laptop = rig.laptop.config_dir
    done = subprocess.run(
        [str(ssh), "-q", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-i", str(laptop / "id_ed25519"), "-o", f"UserKnownHostsFile={laptop / 'known_hosts'}",
         "-o", "StrictHostKeyChecking=yes", "-p", str(agent.port), "-s",
         f"lab@{agent.host}", "continue"],
        input=f"{run['id']}#{run['pause']['seq']}\n", capture_output=True, text=True,  # type: ignore[index]
        timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(running: bench05)" in fleet.then("=== 4/5 paused at")
    fleet.enter()
    code, out, err = fleet.finish()
    assert code == 0, err
    assert out.count("after") == 5


def _fleet_on_a_terminal(rig: Rig,
                         script: Path) -> tuple[subprocess.Popen[str], int, bytearray]:
    """`lager python script` on all five boxes with its stderr on a wide pty: the process, the
    pty's master (for the caller to close) and what the pty has shown so far (read on)."""
    import os
    import threading

    master, slave = _wide_pty()
    proc = subprocess.Popen(rig.laptop_cmd("python", str(script), "--box", ALL),
                            env=rig.laptop.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=slave, text=True)
    STARTED.append(proc)
    os.close(slave)
    seen = bytearray()
    threading.Thread(target=_pty_reader, args=(master, seen), daemon=True).start()
    return proc, master, seen


def _wide_pty() -> tuple[int, int]:
    """A pty wide enough that a pause line (with its long temp path) takes one row."""
    return _pty_of_size(rows=50, columns=1000)


def _pty_of_size(rows: int, columns: int) -> tuple[int, int]:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def _statuses_on_a_pty(rows: int, columns: int, *statuses: str) -> bytes:
    """What a real pty of that size receives when the fleet's Terminal shows statuses in turn
    (read until the last one has arrived)."""
    import os
    import threading

    from client.fleet.output import Terminal

    master, slave = _pty_of_size(rows, columns)
    seen = bytearray()
    threading.Thread(target=_pty_reader, args=(master, seen), daemon=True).start()
    with open(slave, "wb", buffering=0) as err, open(os.devnull, "wb") as out:
        terminal = Terminal(stdout=out, stderr=err)
        for status in statuses:
            terminal.status(status)
        last = statuses[-1].encode()
        wait_for(lambda: seen.endswith(last), 10, what=repr(bytes(seen)))
    os.close(master)
    return bytes(seen)


def _pty_reader(master: int, seen: bytearray) -> None:
    import os

    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            return
        if not data:
            return
        seen.extend(data)


def test_on_a_terminal_each_breakpoint_has_its_line(rig: Rig, tmp_path: Path) -> None:
    """Boxes 0, 2, 4 pause at one line, 1 and 3 at another: two lines, both redrawn in place
    (the cursor goes back up over both before each redraw)."""
    import os

    script = write_script(tmp_path, "two.py", (
        "import os\nfrom lager import pause\n"
        "if int(os.environ['LAGER_FLEET_INDEX']) % 2:\n"
        "    pause('odd', timeout=0)\n"
        "else:\n"
        "    pause('even', timeout=0)\n"
        "print('after')\n"))
    proc, master, seen = _fleet_on_a_terminal(rig, script)
    both = re.compile(rb'=== 3/5 paused at \S*two\.py:6 "even" .*\r?\n'
                      rb'=== 2/5 paused at \S*two\.py:4 "odd" ')
    wait_for(lambda: both.search(seen), 60, what="both lines")
    assert b"\r\x1b[1A\x1b[J" in seen  # two lines cleared as one status
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(60) == 0
    assert proc.stdout is not None and proc.stdout.read().count("after") == 5
    os.close(master)


def test_the_lines_fit_the_terminal_height() -> None:
    """A real pty three rows high: two rows of status at most, the second says what is left."""
    seen = _statuses_on_a_pty(3, 200, "=== a\n=== b\n=== c\n=== d", "=== a")
    text = seen.replace(b"\r\n", b"\n")
    assert text.startswith(b"=== a\n=== (+3 more breakpoints)"), text
    assert b"=== b" not in text
    assert text.endswith(b"\r\x1b[1A\x1b[J=== a"), text


def test_a_wrapped_line_is_cleared_whole() -> None:
    """A pty 20 columns wide: a 30-character line takes two rows, so the redraw goes up one."""
    seen = _statuses_on_a_pty(24, 20, "=== " + "x" * 26, "=== short")
    assert seen.endswith(b"x" * 26 + b"\r\x1b[1A\x1b[J=== short"), seen


def test_wide_characters_count_two_columns_in_the_redraw() -> None:
    """A pty 20 columns wide: 4 + 9 CJK characters (2 columns each) is 22 columns, two rows,
    though it is 13 characters; the redraw must go up one row to clear it whole."""
    seen = _statuses_on_a_pty(24, 20, "=== " + "界" * 9, "=== short")
    assert seen.endswith("界".encode() * 9 + b"\r\x1b[1A\x1b[J=== short"), seen


def test_a_label_s_escape_is_shown_not_obeyed() -> None:
    """A label with ESC [ 2 J (clear screen) in it: the terminal gets ^[ as text."""
    seen = _statuses_on_a_pty(24, 80, '=== 1/1 paused at t.py:3 "x\x1b[2Jy"', "=== short")
    assert b"\x1b[2J" not in seen, seen
    assert b'"x^[[2Jy"' in seen, seen

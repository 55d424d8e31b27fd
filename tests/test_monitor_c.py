"""The per-run monitor in C (box_agent/monitor/monitor.c): runs use it, a paused run's monitor
stays far under the issue's 2 MiB, and it survives what a script or a bad start throws at it.
The rest of its behaviour (output, pauses, restarts, --replace) is what the durable, runs,
console and process-tracking tests check, with this monitor under every run."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import Client, cannot_run, pids_with_cmdline, start_run, write_script

from box_agent import monitor_build


@pytest.fixture(scope="module")
def binary() -> Path:
    try:
        return monitor_build.build()
    except OSError as exc:
        cannot_run(f"the C monitor cannot be built here: {exc}")
        raise


def kib(pid: int, *keys: str) -> int:
    total = 0
    for name in ("smaps_rollup", "status"):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in keys:
                total += int(rest.split()[0])
    return total


def test_a_paused_run_is_monitored_in_c_within_the_memory_rule(client: Client, binary: Path,
                                                               tmp_path: Path) -> None:
    script = write_script(tmp_path, "held.py", "from lager import pause\nprint('x' * 100000)\n"
                          "pause('memory', timeout=0)\n")
    run = start_run(client, script)
    ident = run.banner_id()
    run_id = next(r["id"] for r in json.loads(client.run("python", "--list", "--json").stdout)
                  if r["short_id"] == ident)
    [monitor] = pids_with_cmdline("box_agent.monitor", f"{run_id}.monitor")
    assert os.path.realpath(f"/proc/{monitor}/exe") == str(binary.resolve())
    # Issue 11: a paused run costs at most 2 MiB more than its script alone. Its monitor's
    # whole share of memory, page tables included, after 100 kB of output went through it:
    assert kib(monitor, "Pss", "VmPTE") < 1024
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0
    assert run.out.text == "x" * 100000 + "\n"


def test_garbage_on_the_scripts_link_changes_nothing(client: Client, binary: Path,
                                                      tmp_path: Path) -> None:
    """Generated hostile datagrams on the script's end of its link: random bytes, broken and
    deep JSON, a message past the monitor's buffer. The monitor drops what it cannot read,
    and the run, its pause and its output go on."""
    rng = random.Random(11)
    junk = [rng.randbytes(rng.randrange(1, 300)) for _ in range(200)]
    junk += [b"", b"{", b"[1,2]", b'"op"', b'{"op":"pause"', b'{"op":}', b"{" * 5000,
             b'{"a":' * 100 + b"1" + b"}" * 100, b'{"op":"\x01"}', b'{"op":"x","v":NaN}',
             b'{"op":"nonsense","x":' + b"9" * 70000 + b"}", b"\xff\xfe{}", b"{}" * 3]
    (tmp_path / "junk.json").write_text(json.dumps([j.hex() for j in junk]))
    script = write_script(tmp_path, "hostile.py", f"""
import json, os, socket
from lager import pause
link = socket.socket(fileno=os.dup(int(os.environ["LAGER_AGENT_FD"])))
for item in json.load(open({str(tmp_path / "junk.json")!r})):
    try:
        link.send(bytes.fromhex(item))
    except OSError:
        pass  # too long for one datagram: the kernel refused it, as it should
print("sent", flush=True)
pause("after the junk", timeout=0)
print("resumed")
""")
    run = start_run(client, script)
    ident = run.banner_id()
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0
    assert run.out.text == "sent\nresumed\n"


def run_monitor(binary: Path, tmp_path: Path, *args: str) -> tuple[int, str, list[dict]]:
    """The monitor on its own, with us as its agent: its exit code, stderr and messages."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    monitor_dir = tmp_path / "mon"
    monitor_dir.mkdir()
    proc = subprocess.Popen([str(binary), str(theirs.fileno()), str(monitor_dir), *args],
                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    theirs.close()
    ours.settimeout(30)
    messages = []
    try:
        while data := ours.recv(65536):
            messages.append(json.loads(data))
            if messages[-1]["op"] == "exit":
                break  # closing our end lets it go (it lingers for our last words)
    finally:
        ours.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    return proc.wait(30), err, messages


def test_a_script_that_cannot_start_gets_one_clear_message(binary: Path, tmp_path: Path) -> None:
    code, err, messages = run_monitor(binary, tmp_path, str(tmp_path / "no-such-dir"), "-",
                                      "--", "/bin/true")
    assert code == 127 and err == ""
    [failed] = messages
    assert failed["op"] == "failed"
    assert failed["error"].startswith("cannot start the script: [Errno 2]")


@pytest.mark.parametrize("args", [[], ["/tmp", "-", "/bin/true"], ["/tmp", "1:x:", "--", "ls"]])
def test_bad_arguments_get_one_line_and_exit_2(binary: Path, tmp_path: Path,
                                               args: list[str]) -> None:
    code, err, messages = run_monitor(binary, tmp_path, *args)
    assert code == 2 and len(err.splitlines()) == 1 and messages == []


def test_the_monitor_passes_exit_code_and_output_to_its_agent(binary: Path,
                                                              tmp_path: Path) -> None:
    from box_agent.runlog import LogReader, log_end

    workdir = tmp_path / "work"
    workdir.mkdir()
    code, err, messages = run_monitor(
        binary, tmp_path, str(workdir), "-", "--", "sh", "-c",
        "echo out; echo err >&2; sleep 31.7 & exit 7")
    assert code == 7, err
    assert messages[0]["op"] == "hello" and messages[-1]["op"] == "exit"
    assert messages[-1]["status"] == 7
    monitor_dir = tmp_path / "mon"
    status = json.loads((monitor_dir / "status.json").read_text())
    assert status["status"] == 7 and status["end"] == log_end(monitor_dir)
    chunks = list(LogReader(monitor_dir).read(0, status["end"]))
    assert sorted((c.stream, c.data) for c in chunks) == [(1, b"out\n"), (2, b"err\n")]
    assert not pids_with_cmdline("31.7")  # what the script left running was swept first

"""The per-run monitor in C (box_agent/monitor/monitor.c): runs use it, a paused run's monitor
stays far under the issue's 2 MiB, and it survives what a script or a bad start throws at it.
The rest of its behaviour (output, pauses, restarts, --replace) is what the durable, runs,
console and process-tracking tests check, with this monitor under every run."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Client, pids_with_cmdline, start_run, write_script

from box_agent import monitor_build

PYTHON_MONITOR = os.environ.get(monitor_build.ENV_PYTHON_MONITOR) == "1"


@pytest.fixture(scope="module")
def program(binary: Path) -> list[str]:
    """The monitor the agent would start: C, or Python with LAGER_BOX_PYTHON_MONITOR=1. The
    protocol tests below run against both, and must pass the same way."""
    return [sys.executable, "-m", "box_agent.monitor"] if PYTHON_MONITOR else [str(binary)]


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
    if PYTHON_MONITOR:  # the fallback, forced: no C monitor under this run
        assert os.path.realpath(f"/proc/{monitor}/exe") == os.path.realpath(sys.executable)
        assert client.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0
        return
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


def run_monitor(binary: Path | list[str], tmp_path: Path,
                *args: str) -> tuple[int, str, list[dict]]:
    """The monitor on its own, with us as its agent: its exit code, stderr and messages."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    monitor_dir = tmp_path / "mon"
    monitor_dir.mkdir()
    head = [str(binary)] if isinstance(binary, Path) else binary
    proc = subprocess.Popen([*head, str(theirs.fileno()), str(monitor_dir), *args],
                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    theirs.close()
    ours.settimeout(30)
    messages = []
    try:
        while data := ours.recv(1 << 20):
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


# -- banners: the script sends its pause/resume text, the monitor places it on stderr ---------

BANNER_SCRIPT = """
import json, os, socket, sys
link = socket.socket(fileno=int(os.environ["LAGER_AGENT_FD"]))
link.settimeout(60)
for item in json.load(open(sys.argv[1])):
    os.write(2, bytes.fromhex(item["before"]))
    if item["datagram"]:
        link.send(bytes.fromhex(item["datagram"]))
    if item["probe"]:  # a message that must be placed: the next reply is its own
        link.send(bytes.fromhex(item["probe"]))
        print(link.recv(65536).decode().strip(), flush=True)
"""


def _placed_run(program: list[str], tmp_path: Path,
                items: list[dict]) -> tuple[list[str], list[dict], bytes]:
    """Run BANNER_SCRIPT under the monitor: what the script heard back, what the agent was
    told, and the run's stderr as the log holds it."""
    from box_agent.runlog import LogReader

    (tmp_path / "items.json").write_text(json.dumps(items))
    (tmp_path / "banner.py").write_text(BANNER_SCRIPT)
    workdir = tmp_path / "work"
    workdir.mkdir()
    code, err, messages = run_monitor(program, tmp_path, str(workdir), "-", "--",
                                      sys.executable, str(tmp_path / "banner.py"),
                                      str(tmp_path / "items.json"))
    assert code == 0, err
    monitor_dir = tmp_path / "mon"
    chunks = list(LogReader(monitor_dir).read(0, messages[-1]["end"]))
    stdout = b"".join(c.data for c in chunks if c.stream == 1).decode()
    stderr = b"".join(c.data for c in chunks if c.stream == 2)
    return stdout.splitlines(), [m for m in messages if m["op"] == "script"], stderr


def _message(op: str, seq: int, banner: object, **more: object) -> str:
    fields = {"file": "t.py", "line": 3, "timeout": 0, "console": False} if op == "pause" \
        else {"how": "enter"}
    body = json.dumps({"op": op, "seq": seq, **fields, **more, "banner": banner}) + "\n"
    return body.encode().hex()


def test_a_banner_is_placed_after_earlier_output_acked_and_its_range_exact(
        program: list[str], tmp_path: Path) -> None:
    """Escapes of every kind, UTF-8 (2, 3 and 4 bytes, and a surrogate pair), a NUL and a lone
    surrogate (which Python writes as '?') in the banner: its bytes on stderr are exactly
    the text's UTF-8, after what the script wrote before, at the range the agent is told."""
    text = '=== paused "q" \\ /\t\b\f\r é € 😀 \x00 lone \ud800 end\n'
    pause = _message("pause", 1, text, label="lbl")
    resumed = _message("resumed", 1, "=== resumed\n")
    items = [{"before": b"before\n".hex(), "datagram": b"".hex(), "probe": pause},
             {"before": b"during\n".hex(), "datagram": b"".hex(), "probe": resumed}]
    heard, told, stderr = _placed_run(program, tmp_path, items)
    assert [json.loads(line) for line in heard] == [{"op": "placed", "seq": 1}] * 2
    banner = text.encode("utf-8", "replace")
    assert b"?" in banner and stderr == b"before\n" + banner + b"during\n=== resumed\n"
    assert [m["body"]["op"] for m in told] == ["pause", "resumed"]
    start = len(b"before\n")
    assert told[0]["banner_at"] == [start, start + len(banner)]
    assert told[0]["body"]["banner"] == text and told[0]["body"]["label"] == "lbl"
    end = start + len(banner) + len(b"during\n")
    assert told[1]["banner_at"] == [end, end + len(b"=== resumed\n")]


def test_hostile_and_huge_banners_are_bounded(program: list[str], tmp_path: Path) -> None:
    """What lager.protocol.link would refuse is neither placed nor acked nor relayed; a banner
    up to the link's datagram size is placed whole; a larger datagram is cut by the socket and
    dropped. Each probe after a hostile datagram proves no `placed` came for it."""
    big = "x" * 60000 + "\n"
    hostile = [
        b'{"op":"pause","seq":1,"file":"f","line":1,"timeout":0,"console":false,"banner":"\\x"}',
        b'{"op":"resumed","seq":2,"how":"x","banner":"\xff\xfe"}',  # not UTF-8
        b'{"op":"resumed","seq":3,"how":"x","banner":"\\ud83d\\u00"}',  # a short \\u
        b'{"op":"resumed","seq":4,"how":"x","banner":7}',
        b'{"op":"resumed","seq":"5","how":"x","banner":"t"}',
        b'{"op":"resumed","seq":6.0,"how":"x","banner":"t"}',
        b'{"op":"resumed","seq":7,"banner":"no how"}',
        b'{"op":"pause","seq":8,"file":"f","line":1,"timeout":NaN,"console":false,"banner":"n"}',
        b'{"op":"pause","seq":9,"file":"f","line":1,"timeout":1' + b"0" * 400 +
        b',"console":false,"banner":"overflow"}',
        b'{"op":"resumed","seq":1' + b"0" * 5000 + b',"how":"x","banner":"digits"}',
        b'{"op":"placed","seq":10}',
        b'{"op":"resumed","seq":11,"how":"x","banner":"dup","banner":5}',  # the last key wins
        b'{"op":"resumed","seq":12,"how":"x","banner":"' + b"y" * 70000 + b'"}',  # > datagram
        b'{"op":"resumed","seq":13,"how":"x","banner":"a\nraw newline"}',
        b'{"op":"resumed","seq":14,"how":"x","banner":"ok"} x',
    ]
    # A surrogate in raw UTF-8 is not refused (json.loads decodes with 'surrogatepass'): it
    # is placed as '?', as Python writes a lone surrogate.
    surrogate = b'{"op":"resumed","seq":300,"how":"x","banner":"a\xed\xa0\x80\\udc00b"}'

    items = [{"before": b"".hex(), "datagram": bad.hex(),
              "probe": _message("resumed", 100 + i, f"probe {i}\n")}
             for i, bad in enumerate(hostile)]
    items.append({"before": b"".hex(), "datagram": b"".hex(),
                  "probe": _message("pause", 200, big)})
    items.append({"before": b"".hex(), "datagram": b"".hex(), "probe": surrogate.hex()})
    # Keys and tags are text: escaped, they are the same keys and tags to json.loads.
    escaped = rb'{"o\u0070":"r\u0065sumed","s\u0065q":301,"how":"x","banner":"esc"}'
    items.append({"before": b"".hex(), "datagram": b"".hex(), "probe": escaped.hex()})
    # "" is no banner: relayed, but neither placed nor acked (then 54 kB of escapes)
    items.append({"before": b"".hex(), "datagram": _message("resumed", 201, ""),
                  "probe": _message("resumed", 202, "\u00e9" * 9000)})
    heard, told, stderr = _placed_run(program, tmp_path, items)
    assert [json.loads(line)["seq"] for line in heard] == [
        *range(100, 100 + len(hostile)), 200, 300, 301, 202]
    expected = "".join(f"probe {i}\n" for i in range(len(hostile))) + big + "a??b" + "esc" + \
        "\u00e9" * 9000
    assert stderr == expected.encode()
    assert [m["body"]["seq"] for m in told] == [*range(100, 100 + len(hostile)), 200, 300, 301,
                                                201, 202]
    assert told[-2]["banner_at"] is None
    at = len(expected.encode()) - len(big.encode()) - 7 - 18000
    assert told[-5]["banner_at"] == [at, at + len(big)]
    assert told[-4]["banner_at"] == [at + len(big), at + len(big) + 4]
    assert told[-3]["banner_at"] == [at + len(big) + 4, at + len(big) + 7]
    assert told[-1]["banner_at"] == [at + len(big) + 7, at + len(big) + 7 + 18000]


def test_a_pause_labelled_with_thousands_of_emoji_still_pauses(client: Client,
                                                              tmp_path: Path) -> None:
    """An astral character is 12 bytes of JSON (a pair of \\u escapes) and the label travels
    twice: cut at 4000 characters it overran the link's 64 KiB datagram, the monitor dropped
    the pause, and the script waited for a resume nobody would send."""
    script = write_script(tmp_path, "emoji.py", "from lager import pause\n"
                          "pause('\\U0001F600' * 5000, timeout=0)\nprint('after')\n")
    run = start_run(client, script)
    ident = run.banner_id()
    assert "\U0001F600" * 100 in run.err.text
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 0
    assert run.out.text == "after\n"


# 200 lines of 16 KiB (a record each, mostly), the last one as long, then it waits for ever.
LINE = 16384
MIB = 1 << 20
REUSING = f"""
import sys, time
for i in range(200):
    sys.stdout.write(f"{{i:05d}} " + "r" * ({LINE} - 7) + "\\n")
    sys.stdout.flush()
    time.sleep(0.002)  # not a measure: one line in the pipe at a time, a record each
sys.stdout.write("all written".ljust({LINE} - 1) + "\\n")
sys.stdout.flush()
while True:
    time.sleep(1)
"""


def reusing_output() -> str:
    return "".join(f"{i:05d} " + "r" * (LINE - 7) + "\n" for i in range(200)) + \
        "all written".ljust(LINE - 1) + "\n"


def test_a_run_adopted_after_its_monitor_died_in_a_reused_segment_keeps_its_end(
        tmp_path: Path) -> None:
    """--run-log-limit 1M: the monitor reuses dropped segments' files (box_agent/monitor/
    log.c). Agent, monitor and script die (a reboot) while the newest segment is a reused
    file with an older segment's records after its own. The next agent takes the run's end
    from disk (runlog.log_end): a reattach gets the newest bytes the log kept, and none of
    the old ones after them."""
    from conftest import descendants_of, make_client, runs_by_id, start_agent, wait_for

    from box_agent.runlog import log_end, segments

    box = start_agent(tmp_path / "state", "--run-log-limit", "1M")
    again = None
    try:
        laptop = make_client(tmp_path / "laptop", box)
        started = laptop.run("python", str(write_script(tmp_path, "reusing.py", REUSING)),
                             "--detach")
        assert started.returncode == 0, started.stderr
        row = next(r for r in runs_by_id(laptop).values() if r["script"].endswith("reusing.py"))
        monitor_dir = box.state_dir / "runs" / f"{row['id']}.monitor"

        def all_written() -> bool:
            return any(b"all written" in s.path.read_bytes() for s in segments(monitor_dir)[-2:])

        wait_for(all_written, 60, what="the script's last line in the log")
        end = log_end(monitor_dir)
        last = segments(monitor_dir)[-1]
        if not PYTHON_MONITOR:  # the C monitor reused the file: old bytes follow the new
            assert last.path.stat().st_size > end - last.start
        box.proc.kill()
        box.proc.wait()
        script = int(row["pid"])
        os.kill(script, signal.SIGSTOP)  # it cannot end (and be recorded) before its monitor
        for pid in pids_with_cmdline(f"{row['id']}.monitor"):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pids_with_cmdline(f"{row['id']}.monitor"), 20, what="monitor gone")
        for pid in [script, *descendants_of(script)]:
            os.kill(pid, signal.SIGKILL)
        again = start_agent(tmp_path / "state", "--run-log-limit", "1M",
                            listen=f"127.0.0.1:{box.port}")
        attach = laptop.run("python", "--reattach", row["id"])
        assert log_end(monitor_dir) == end
        full = reusing_output()
        assert full.endswith(attach.stdout) and len(attach.stdout) >= MIB * 0.8, \
            attach.stdout[-200:]
        assert "was lost" in attach.stderr
    finally:
        if again is not None:
            again.stop()
        if box.proc.poll() is None:
            box.stop()


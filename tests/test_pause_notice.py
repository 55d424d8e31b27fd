"""The structured pause notice (issue 14) from a real agent, read by clients we did not write
(asyncssh, OpenSSH) and by lager's Follower through its one hook, `on_event`.

The framed form is parsed here with struct, from the documented layout alone
(docs/protocol.md), not with lager's own decoder.
"""
from __future__ import annotations

import asyncio
import io
import json
import struct
import subprocess
import threading
import time
from pathlib import Path

import asyncssh
import paramiko
import pytest
from conftest import LAGER, Client, start_run, wait_for, write_script
from sshclients import openssh, paramiko_connect

from client.follow import Follower
from lager import protocol
from lager.protocol.events import Hello, PauseNotice, ResumeNotice

PAUSING = """import sys
print("before", flush=True)
print("to stderr", file=sys.stderr, flush=True)
from lager import pause
pause("check the DUT", timeout=120, on_timeout="safe")
print("after", flush=True)
"""


def header(body: bytes, **extra: object) -> bytes:
    head = {"main": "t.py", "script": "t.py", "files": [{"path": "t.py", "size": len(body)}],
            **extra}
    return json.dumps(head).encode() + b"\n" + body


def parse_records(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole records as the docs describe them: 1 byte stream, 4 bytes big-endian length."""
    records, pos = [], 0
    while pos + 5 <= len(data):
        stream, length = struct.unpack(">BI", data[pos:pos + 5])
        if pos + 5 + length > len(data):
            break
        records.append((stream, data[pos + 5:pos + 5 + length]))
        pos += 5 + length
    return records, data[pos:]


async def _asyncssh_run(client: Client, body: bytes) -> tuple[list[tuple[int, bytes]], int]:
    async with asyncssh.connect(client.agent.host, client.agent.port, username="lab",
                                known_hosts=None, client_keys=[str(client.key_path)],
                                agent_path=None, config=None) as conn:
        writer, reader, _ = await conn.open_session(subsystem="run", encoding=None)
        writer.write(header(body, events=True, v=protocol.PROTOCOL_VERSION))
        buf, records = b"", []
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 60)
            if not chunk:
                break
            done, buf = parse_records(buf + chunk)
            records += done
            events = [json.loads(p) for s, p in done if s == 3]
            if any(e["op"] == "pause" for e in events):
                writer.write(b'{"op": "enter"}\n')  # resume by Enter, as a control line
        assert buf == b""
        await asyncio.wait_for(writer.channel.wait_closed(), 60)
        return records, writer.channel.get_exit_status()


def test_asyncssh_reads_the_pause_notice_and_the_banner_where_it_says(client: Client) -> None:
    started = time.time()
    records, status = asyncio.run(_asyncssh_run(client, PAUSING.encode()))
    assert status == 0
    assert records[0][0] == 3 and json.loads(records[0][1])["op"] == "hello"
    stderr = b"".join(p for s, p in records if s == 2)
    stdout = b"".join(p for s, p in records if s == 1)
    assert stdout == b"before\nafter\n"
    events = [json.loads(p) for s, p in records if s == 3]
    pause = next(e for e in events if e["op"] == "pause")
    hello = events[0]
    assert hello["v"] == protocol.PROTOCOL_VERSION and pause["run_id"] == hello["run_id"]
    assert (pause["seq"], pause["label"], pause["file"], pause["line"]) == \
        (1, "check the DUT", "t.py", 5)
    assert pause["on_timeout"] == "safe" and pause["timeout"] == 120
    assert started < pause["deadline"] - 120 < time.time()
    assert 0 < pause["remaining"] <= 120
    start, end = pause["banner_at"]
    assert stderr[start:end].decode() == pause["banner"]
    assert pause["banner"].startswith('=== lager breakpoint "check the DUT" at t.py:5')
    assert stderr[:start] == b"to stderr\n"
    resume = next(e for e in events if e["op"] == "resume")
    assert resume["seq"] == 1 and resume["how"] == "enter" and resume["by"]
    start, end = resume["banner_at"]
    assert stderr[start:end] == b"=== resumed\n"
    # The notice comes before the banner's bytes, the resume before its line.
    order = [(s, json.loads(p)["op"] if s == 3 else p) for s, p in records]
    assert order.index((3, "pause")) < next(i for i, (s, p) in enumerate(order)
                                            if s == 2 and b"=== lager breakpoint" in p)


def test_openssh_without_events_gets_todays_bytes(client: Client) -> None:
    body = b'print("before", flush=True)\nimport sys\nprint("e", file=sys.stderr)\n'
    result = openssh(client, "run", header(body))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"before\n" and result.stderr == b"e\n"


@pytest.mark.parametrize("v", [1, protocol.PROTOCOL_VERSION, 99])
def test_each_client_gets_the_form_of_its_own_version(client: Client, v: int) -> None:
    """docs/protocol.md's policy, through OpenSSH: a v1 header that says "events" still gets
    v1's plain bytes (no framing, no hello); v2 and an unknown future v get the framed form,
    whose hello names the box's version."""
    body = b'print("out", flush=True)\nimport sys\nprint("err", file=sys.stderr)\n'
    result = openssh(client, "run", header(body, v=v, events=True))
    assert result.returncode == 0, result.stderr
    if v == 1:
        assert result.stdout == b"out\n" and result.stderr == b"err\n"
        return
    records, rest = parse_records(result.stdout)
    assert rest == b"" and result.stderr == b""
    assert records[0][0] == 3
    assert json.loads(records[0][1])["v"] == min(v, protocol.PROTOCOL_VERSION)
    assert b"".join(p for s, p in records if s == 1) == b"out\n"
    assert b"".join(p for s, p in records if s == 2) == b"err\n"


def test_todays_paramiko_client_header_is_served_as_before(client: Client,
                                                            tmp_path: Path) -> None:
    """An old client (the header lager sent before versions, byte for byte) against this box:
    plain stdout and stderr, the banner where it always was, no records."""
    body = b"from lager import pause\nprint('a', flush=True)\npause('old', timeout=0.5)\n"
    old_header = {"script": "t.py", "main": "t.py", "args": [], "env": {}, "timeout": 0,
                  "detach": False, "box": "mybox",
                  "files": [{"path": "t.py", "size": len(body), "mode": 420}],
                  "stop_on_disconnect": False, "client_ref": "abc123",
                  "pause_on_failure": False, "safe_state": "on-failure"}
    ssh = paramiko_connect(client)
    try:
        chan = ssh.get_transport().open_session()  # type: ignore[union-attr]
        chan.invoke_subsystem("run")
        chan.sendall(json.dumps(old_header).encode() + b"\n" + body)
        out = chan.makefile("rb").read()
        err = chan.makefile_stderr("rb").read()
        assert chan.recv_exit_status() == 0
    finally:
        ssh.close()
    assert out == b"a\n"
    assert err.startswith(b'=== lager breakpoint "old" at t.py:3') and \
        err.endswith(b"    auto-resume in 0.5s\n=== auto-resumed after 0.5s\n")


def _attach_channel(client: Client, run_id: str) -> tuple[paramiko.SSHClient, paramiko.Channel]:
    ssh = paramiko_connect(client)
    chan = ssh.get_transport().open_session()  # type: ignore[union-attr]
    chan.set_environment_variable(protocol.ENV_PROTOCOL, str(protocol.PROTOCOL_VERSION))
    chan.invoke_subsystem("attach")
    chan.sendall((run_id + "\n").encode())
    return ssh, chan


def test_on_event_hook_on_reattach_learns_the_pause_and_hides_the_banner(
        client: Client, tmp_path: Path) -> None:
    """The fleet's hook: Follower(on_event=..., show_banners=False) attaching to a paused run
    hears the current pause first, then the resume, and shows the output without banners."""
    script = write_script(tmp_path, "t.py", PAUSING)
    live = start_run(client, script)
    ident = live.banner_id()
    ssh, chan = _attach_channel(client, ident)
    events: list[object] = []
    resumed: list[subprocess.CompletedProcess[str]] = []

    def on_event(event: object) -> None:
        events.append(event)
        if isinstance(event, PauseNotice):  # resume exactly this pause, from elsewhere
            threading.Thread(target=lambda: resumed.append(client.run(
                "python", "--continue", event.continue_id))).start()

    out, err = io.BytesIO(), io.BytesIO()
    try:
        follower = Follower(chan, "mybox", stops_run=False, on_event=on_event,
                            show_banners=False, stdout=out, stderr=err, read_stdin=False)
        assert follower.run() == 0
    finally:
        ssh.close()
    assert live.finish() == 0
    wait_for(lambda: resumed, what="the --continue")
    assert resumed[0].returncode == 0, resumed[0].stderr
    assert [type(e) for e in events] == [Hello, PauseNotice, ResumeNotice]
    pause, resume = events[1], events[2]
    assert isinstance(pause, PauseNotice) and isinstance(resume, ResumeNotice)
    assert pause.seq == resume.seq == 1 and resume.how == "continue"
    assert pause.banner and "check the DUT" in pause.banner
    assert out.getvalue() == b"before\nafter\n"
    # The banner and the resume line are left out; what the script wrote stays.
    assert err.getvalue() == b"to stderr\n"
    assert "=== lager breakpoint" in live.err.text and "=== resumed" in live.err.text


def test_the_cli_asks_for_events_and_shows_todays_bytes_and_enter_resumes(
        client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "t.py", PAUSING)
    proc = subprocess.Popen([LAGER, "python", str(script), "--box", client.box],
                            env=client.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    live_err = b""
    assert proc.stderr is not None
    while b"auto-resume in" not in live_err:
        chunk = proc.stderr.read1(4096)  # type: ignore[attr-defined]
        assert chunk, live_err
        live_err += chunk
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    out, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out == b"before\nafter\n"
    assert (live_err + rest).count(b"=== lager breakpoint") == 1
    assert (live_err + rest).endswith(b"=== resumed\n")


def test_a_huge_label_still_pauses_with_its_banner(client: Client, tmp_path: Path) -> None:
    """The label travels in one datagram of the script's link (twice: alone and in the
    banner); a label of 100 000 characters is cut, never a pause that never registers."""
    script = write_script(tmp_path, "t.py", "from lager import pause\n"
                                            "pause('\u00e9' * 100_000, timeout=0.5)\n")
    result = client.run("python", str(script))
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stderr.count("=== lager breakpoint") == 1
    from lager.breakpoints.pause import LABEL_ROOM

    assert "\u00e9" * LABEL_ROOM + "\u2026" in result.stderr
    assert result.stderr.endswith("=== auto-resumed after 0.5s\n")

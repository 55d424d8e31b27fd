"""Hostile input: thousands of generated malformed requests against a real agent.

The rules (DESIGN.md, issue 10): every malformed request gets exit status 1 and one line on
stderr, or its channel is closed cleanly; the agent stays up, its log never shows a traceback
and gets at most one line per refusal; a refused upload leaves no run dir behind.

asyncssh is the outside client for volume (several connections, many channels on each);
paramiko and OpenSSH `ssh -s` cover a few cases each, since those are what users run.
"""
from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest
from conftest import (
    Agent,
    Client,
    cannot_run,
    make_client,
    start_agent,
    start_run,
    wait_for,
    write_script,
)
from sshclients import openssh, paramiko_subsystem

from box_agent.subsystems import SUBSYSTEMS
from lager import protocol

SEED = 20261205
CASES = 10_500
CONNECTIONS = 4
CHANNELS_PER_CONNECTION = 6
SEEDED_RUNS = 24
MB = 1024 * 1024
ID_SUBSYSTEMS = ("continue", "console", "attach", "kill")


@dataclass
class Case:
    kind: str  # which generator made it: the failure report groups by this
    subsystem: str | None  # None: a shell request; "exec:..." an exec request
    stdin: bytes = b""
    env: dict[bytes, bytes] = field(default_factory=dict)
    term: tuple[int, int, int, int] | None = None
    window_changes: int = 0
    interrupts: int = 0  # signals and breaks sent while the agent waits for the request
    drop: bool = False  # opened and dropped at once: only the agent's health is checked
    expect: str = "refuse"  # "refuse" (exit 1, one line), "ok" (exit 0) or "closed"
    eof: bool = True


@dataclass
class Outcome:
    status: int | None
    out: bytes
    err: bytes
    opened: bool


# --------------------------------------------------------------------------- generators

INVALID_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80",
                b"\x80abc", b"abc\xe2\x82")
ODD_TEXT = ("\u2026", "...", "\u2026\u2026", "a\u2026", "\u2026b", "0\u20260", "\u202e1234",
            "\uff17f3a", "\U0001f600", "e\u0301", "\x1b[2J\x1b[H", "\t", " \t \r", "\ufeff",
            "id\x00id", "\x7f\x08\x08", "../../etc/passwd", "$(reboot)", "%s%n%x", "{}", "null")


class Generator:
    def __init__(self, rng: random.Random, run_ids: list[str]) -> None:
        self.rng = rng
        self.run_ids = run_ids

    def matches(self, payload: bytes) -> list[str]:
        """The runs the agent would resolve this id line (or env value) to."""
        line = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")[0]
        try:
            query = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            return []
        if not query or len(line) > protocol.MAX_ID_LINE:
            return []
        return [r for r in self.run_ids if protocol.id_matches(query, r)]

    def env_matches(self, value: bytes) -> list[str]:
        try:
            query = value.decode("utf-8").strip()
        except UnicodeDecodeError:
            return []
        return [r for r in self.run_ids if query and protocol.id_matches(query, r)]

    def garbage(self) -> bytes:
        rng = self.rng
        pick = rng.randrange(12)
        if pick == 0:
            return rng.randbytes(rng.choice((1, 7, 31, 200, 4095, 4096, 4097, 9000)))
        if pick == 1:
            return b"\x00" * rng.randrange(1, 64) + rng.choice((b"", b"\n"))
        if pick == 2:
            return rng.choice(INVALID_UTF8) * rng.randrange(1, 9) + rng.choice((b"", b"\n"))
        if pick == 3:
            return rng.choice(ODD_TEXT).encode() + rng.choice((b"\n", b"\r", b"\r\n", b""))
        if pick == 4:
            return rng.choice((b"", b"\n", b"\r\n", b"   \n", b"\r", b"\n\n\n"))
        if pick == 5:  # ambiguous: a prefix most seeded runs share with another
            return rng.choice("0123456789abcdef").encode() + rng.choice((b"\n", b""))
        if pick == 6:
            run = rng.choice(self.run_ids)
            return (run[:rng.randrange(1, 4)] + "\x00" + run[4:]).encode() + b"\n"
        if pick == 7:
            return rng.randbytes(rng.randrange(1, 40)).replace(b"\n", b"") + b"\n" \
                + rng.randbytes(rng.randrange(0, 100))
        if pick == 8:
            return b"a" * rng.choice((protocol.MAX_ID_LINE, protocol.MAX_ID_LINE + 1, 65537))
        if pick == 9:
            return "".join(rng.choice("0123456789abcdefABCDEF\u2026. ")
                           for _ in range(rng.randrange(1, 40))).encode() + b"\n"
        if pick == 10:
            return json.dumps({"id": rng.choice(self.run_ids)[:3], "seq": -1}).encode() + b"\n"
        return b"ffff" + rng.randbytes(2).hex().encode() + b"\n"  # a plausible, unknown id

    def id_case(self, sub: str) -> Case:
        rng = self.rng
        payload = self.garbage()
        env: dict[bytes, bytes] = {}
        if rng.random() < 0.2:  # the id in LAGER_BREAKPOINT instead of the first line
            value = self.garbage().rstrip(b"\n")
            env[protocol.ENV_BREAKPOINT_ID.encode()] = value
            payload = self.garbage() if rng.random() < 0.3 else b""
            matched = self.env_matches(value)
        else:
            matched = self.matches(payload)
        if sub == "kill" and rng.random() < 0.3 and not env:
            payload = payload.rstrip(b"\r\n") + b" " + rng.choice(
                (b"SIGFOO", b"0", b"99999", b"-9", b"KILL extra", b"\xff", b"1e3")) + b"\n"
            matched = self.matches(payload.split(b" ")[0])
        expect = "refuse"
        if sub == "attach" and len(matched) == 1:
            expect = "ok"  # a finished run, replayed: a valid request that garbage hit
        return Case(f"{sub}:id", sub, payload, env, expect=expect)

    def run_header_case(self) -> Case:
        """A run request with exactly one thing wrong with it (so no script ever starts)."""
        rng = self.rng
        body = b"print('never runs')\n"
        head: dict[str, object] = {"script": "t.py", "main": "t.py", "args": [], "env": {},
                                   "timeout": 0, "detach": True,
                                   "files": [{"path": "t.py", "size": len(body), "mode": 420}]}
        files = head["files"]
        assert isinstance(files, list)
        flaw = rng.randrange(24)
        data = body
        if flaw == 0:
            head["main"] = rng.choice(("", None, 7, "../t.py", "/etc/passwd", "x.py", "t.py\x00"))
        elif flaw == 1:
            files[0]["path"] = rng.choice(("", ".", "..", "/abs.py", "a/../../t.py", "t\x00.py",
                                           None, 3, ["t.py"], "./", "a" * 5000))
        elif flaw == 2:
            files[0]["size"] = rng.choice((-1, "20", None, 1.5, [], 2**63, 10**30))
        elif flaw == 3:
            files[0]["mode"] = rng.choice(("rwx", [], {}, None, 1.5e300, "0o777", -1))
        elif flaw == 4:
            head["args"] = rng.choice(("a b", [1, 2], [None], ["ok", b"x".hex(), 3], {}))
        elif flaw == 5:
            head["env"] = rng.choice(({"A": 1}, {"1BAD": "x"}, {"": "x"}, {"A=B": "x"}, ["A=1"],
                                      {"A": None}, {"A\x00": "x"}, {"\u00e9": "x"}))
        elif flaw == 6:
            head["timeout"] = rng.choice((-1, "10", None, [], float("nan"), float("-inf")))
        elif flaw == 7:
            head["files"] = rng.choice(({}, "t.py", None, [None], [[]], [1, 2]))
        elif flaw == 8:  # the upload ends early
            data = body[: rng.randrange(0, len(body))]
        elif flaw == 9:  # larger than the box takes
            files[0]["size"] = 600 * MB
        elif flaw == 10:
            files.append({"path": "t.py", "size": 0, "mode": 420})
        elif flaw == 11:
            files.append({"path": "t.py/inner.py", "size": 0, "mode": 420})
        elif flaw == 12:
            files[1:] = [{"path": "a", "size": 0}, {"path": "a/b", "size": 0}]
        elif flaw == 13:
            head["env"] = {"A": "x\x00y"}
        elif flaw == 14:
            head["args"] = ["a\x00b"]
        elif flaw == 15:
            return Case("run:nesting", "run", b"[" * 200_000 + b"\n")
        elif flaw == 16:
            return Case("run:notjson", "run", self.garbage() + b"\n")
        elif flaw == 17:
            return Case("run:json", "run", rng.choice(
                (b"[]", b"1", b'"x"', b"null", b"1e999999", b"{" * 50, b'{"files": 1}',
                 b"9" * 5000, b'{"a":' * 3000)) + b"\n")
        elif flaw == 18:
            return Case("run:long", "run", b"{" + b" " * rng.choice((MB + 1, 2 * MB)))
        elif flaw == 19:
            return Case("run:eof", "run", rng.choice((b"", b'{"main": "t.py"')))
        elif flaw == 20:
            head["main"] = "t.py"
            files[0]["path"] = "u.py"
        elif flaw == 21:
            files[0]["path"] = "d" * 300 + "/t.py"
            head["main"] = files[0]["path"]
        elif flaw == 22:  # valid JSON, but no exec takes an argument this long (E2BIG)
            head["args"] = ["z" * rng.choice((200_000, 3 * MB))]
        else:
            head["files"] = [{"path": f"f{i}.py", "size": 0} for i in range(100_001)]
        raw = json.dumps(head).encode() + b"\n"
        return Case(f"run:flaw{flaw}", "run", raw + data)

    def nets_case(self) -> Case:
        rng = self.rng
        pick = rng.randrange(6)
        if pick == 0:
            return Case("nets:garbage", "nets", self.garbage() + b"\n")
        if pick == 1:
            return Case("nets:nesting", "nets", b'{"a":' * 20_000 + b"\n")
        if pick == 2:
            return Case("nets:long", "nets", b"{" * (65 * 1024))
        # A well-formed request with exactly one thing wrong, whatever the bench offers.
        command, net = rng.choice((("supply", "supply1"), ("battery", "battery1"),
                                   ("adc", "adc1")))
        request: dict[str, object] = {"command": command, "net": net}
        flaw = rng.randrange(4)
        if flaw == 0:
            request["command"] = rng.choice(("nope", None, 1, ["supply"], "x" * 300, "adc\x00"))
        elif flaw == 1:
            request["net"] = rng.choice(("nonet", "", "supply1\x00", "x" * 5000, 5, {"a": 1},
                                         ["supply1"]))
        elif flaw == 2:
            request["action"] = rng.choice(("explode", 3, ["state"], "x" * 300, "state\x00"))
        else:
            request["action"] = rng.choice(("voltage", "current", "soc"))
            request["value"] = rng.choice((float("nan"), float("inf"), -float("inf"), "3.3",
                                           True, [], 10**400, {"v": 1}))
        text = json.dumps(request)
        return Case("nets:request", "nets", text.encode() + b"\n")

    def other_case(self) -> Case:
        rng = self.rng
        pick = rng.randrange(6)
        if pick == 0:
            name = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 60)))
            if name in SUBSYSTEMS:
                name += "x"
            return Case("subsystem:unknown", name, self.garbage())
        if pick == 1:
            return Case("subsystem:nul", "run\x00" + "x" * rng.randrange(9), b"")
        if pick == 2:
            return Case("shell", None, self.garbage())
        if pick == 3:
            return Case("exec", "exec:" + rng.choice(("ls", "rm -rf /", "\x00", "a" * 30000)),
                        b"")
        if pick == 4:
            return Case("list:stdin", "list", self.garbage(), expect="ok")
        return Case("subsystem:long", "x" * rng.choice((1000, 30000)), b"")

    def channel_abuse(self, base: Case) -> Case:
        """Wrap a case in PTY sizes, window-change floods, signals, or an instant drop."""
        rng = self.rng
        pick = rng.randrange(5)
        if pick == 0:
            base.term = rng.choice(((0, 0, 0, 0), (2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1),
                                    (1, 1, 0, 0), (65535, 65536, 0, 0), (80, 2**31, 7, 7)))
            base.kind += "+pty"
        elif pick == 1:
            base.term = (80, 24, 0, 0)
            base.window_changes = rng.choice((10, 100, 500))
            base.kind += "+winch"
        elif pick == 2:
            base.interrupts = rng.randrange(1, 20)
            base.kind += "+signals"
        elif pick == 3:
            base.drop = True
            base.kind += "+drop"
        elif base.kind.endswith(":id") and not base.env and base.stdin.endswith(b"\n"):
            base.eof = False  # the client keeps its side open: the agent must still answer
            base.kind += "+noeof"
        return base

    def cases(self, count: int) -> Iterator[Case]:
        rng = self.rng
        for _ in range(count):
            roll = rng.random()
            if roll < 0.45:
                case = self.id_case(rng.choice(ID_SUBSYSTEMS))
            elif roll < 0.70:
                case = self.run_header_case()
            elif roll < 0.82:
                case = self.nets_case()
            else:
                case = self.other_case()
            if rng.random() < 0.3:
                case = self.channel_abuse(case)
            yield case


# --------------------------------------------------------------------------- the client side

class Collector(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        (self.err if datatype == asyncssh.EXTENDED_DATA_STDERR else self.out).extend(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(client: Client) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        client.agent.host, client.agent.port, username="lab", known_hosts=None,
        client_keys=[str(client.key_path)], agent_path=None, config=None,
        encryption_algs=["aes128-gcm@openssh.com"], keepalive_interval=0)


async def play(conn: asyncssh.SSHClientConnection, case: Case) -> Outcome:
    """Send one case on a new channel of conn and collect what came back."""
    kwargs: dict[str, object] = {"encoding": None}
    if case.subsystem is not None and case.subsystem.startswith("exec:"):
        kwargs["command"] = case.subsystem[5:]
    elif case.subsystem is not None:
        kwargs["subsystem"] = case.subsystem
    if case.env:
        kwargs["env"] = case.env
    if case.term is not None:
        kwargs["term_type"] = "xterm"
        kwargs["term_size"] = case.term
    try:
        chan, session = await conn.create_session(Collector, **kwargs)  # type: ignore[arg-type]
    except asyncssh.ChannelOpenError:
        return Outcome(None, b"", b"", opened=False)  # refused at the SSH level: clean
    if case.drop:
        chan.abort() if case.window_changes % 2 else chan.close()
        return Outcome(None, b"", b"", opened=True)
    for _ in range(case.window_changes):
        chan.change_terminal_size(case.term[0] if case.term else 80, 24)
    for i in range(case.interrupts):
        chan.send_signal("INT") if i % 2 else chan.send_break(100)
    try:
        chan.write(case.stdin)
        if case.eof:
            chan.write_eof()
    except (BrokenPipeError, asyncssh.Error, OSError):
        pass  # the agent refused before it had read everything: allowed
    await asyncio.wait_for(session.closed, 60)
    return Outcome(chan.get_exit_status(), bytes(session.out), bytes(session.err), True)


def verdict(case: Case, got: Outcome) -> str | None:
    """None when the outcome follows the rules, else what is wrong with it."""
    if case.drop or not got.opened:
        return None
    if case.expect == "ok":
        return None if got.status == 0 else f"expected success, got {got.status} {got.err!r}"
    if got.status is None:
        return None if not got.out and not got.err else f"closed with output {got.err[:200]!r}"
    lines = got.err.split(b"\n")
    if got.status != 1:
        return f"exit status {got.status}, stderr {got.err[:200]!r}"
    if len(lines) != 2 or lines[1] or not lines[0].strip():
        return f"not one line on stderr: {got.err[:300]!r}"
    if got.out:
        return f"stdout on a refusal: {got.out[:200]!r}"
    if b"internal error" in got.err:
        return f"a bug, not a refusal: {got.err!r}"
    return None


async def fuzz(client: Client, cases: list[Case]) -> list[tuple[Case, str]]:
    failures: list[tuple[Case, str]] = []
    queue: asyncio.Queue[Case] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)

    async def worker(conn: asyncssh.SSHClientConnection) -> None:
        while not queue.empty():
            case = queue.get_nowait()
            try:
                got = await play(conn, case)
            except TimeoutError:
                failures.append((case, "no answer and no close within 60 s"))
                continue
            except (asyncssh.Error, OSError) as exc:
                failures.append((case, f"connection failed: {exc!r}"))
                return
            problem = verdict(case, got)
            if problem:
                failures.append((case, problem))

    conns = [await connect(client) for _ in range(CONNECTIONS)]
    try:
        await asyncio.gather(*(worker(c) for c in conns for _ in range(CHANNELS_PER_CONNECTION)))
    finally:
        for conn in conns:
            conn.close()
    return failures


# --------------------------------------------------------------------------- the tests

SEED_SCRIPT = b"import sys\nsys.exit(0)\n"


async def seed_runs(client: Client, count: int) -> list[str]:
    """Finished runs, so ids (and ambiguous prefixes of them) resolve to something."""
    head = {"script": "seed.py", "main": "seed.py", "args": [], "env": {}, "timeout": 0,
            "detach": True, "files": [{"path": "seed.py", "size": len(SEED_SCRIPT)}]}
    conn = await connect(client)
    ids = []
    try:
        for _ in range(count):
            result = await conn.run(subsystem="run", input=json.dumps(head).encode() + b"\n"
                                    + SEED_SCRIPT, encoding=None)
            assert result.exit_status == 0, result.stderr
            ids.append(json.loads(result.stdout)["id"])
    finally:
        conn.close()
    return ids


def run_ids_on_box(client: Client) -> list[tuple[str, str]]:
    result = openssh(client, "list")
    assert result.returncode == 0, result.stderr
    return [(row["id"], row["state"]) for row in json.loads(result.stdout)]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Agent, Client, list[str]]]:
    root = tmp_path_factory.mktemp("hostile")
    agent = start_agent(root / "state")
    try:
        client = make_client(root / "laptop", agent)
        ids = asyncio.run(seed_runs(client, SEEDED_RUNS))
        wait_for(lambda: all(state == "exited" for _, state in run_ids_on_box(client)),
                 what="the seeded runs to finish")
        yield agent, client, ids
    finally:
        agent.stop()


def agent_is_clean(agent: Agent, client: Client, ids: list[str]) -> None:
    """Alive, no run started and no run dir left by a refusal, no traceback in the log."""
    assert agent.proc.poll() is None, "the agent died"
    assert {run for run, _ in run_ids_on_box(client)} == set(ids)
    # Each run has its dir and, beside it, its monitor's (box_agent/monitor.py).
    kept = set(ids) | {f"{run}.monitor" for run in ids}
    leftovers = {p.name for p in (agent.state_dir / "runs").iterdir()} - kept
    assert not leftovers, f"refused requests left run dirs: {leftovers}"
    log = agent.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]


def test_generated_malformed_requests(box: tuple[Agent, Client, list[str]]) -> None:
    agent, client, ids = box
    log_before = agent.log().count("\n")
    cases = list(Generator(random.Random(SEED), ids).cases(CASES))
    failures = asyncio.run(fuzz(client, cases))
    report = Counter(case.kind for case, _ in failures)
    examples = {case.kind: (case.stdin[:120], problem) for case, problem in failures}
    assert not failures, f"{len(failures)} of {len(cases)} broke the rules: {report}\n{examples}"
    agent_is_clean(agent, client, ids)
    assert agent.log().count("\n") - log_before <= len(cases), "more than one line per refusal"
    kinds = Counter(c.kind.split(":")[0].split("+")[0] for c in cases)
    print(f"\nfuzzed {len(cases)} inputs: {dict(kinds)}")


def one_line_refusal(status: int, out: bytes, err: bytes) -> None:
    assert (status, out) == (1, b""), (status, out[:200], err[:200])
    assert err.endswith(b"\n") and err.count(b"\n") == 1 and err.strip(), err[:300]


@pytest.mark.parametrize("subsystem", ["continue", "console", "attach", "kill", "run", "nets"])
def test_16_mb_lines_from_openssh(box: tuple[Agent, Client, list[str]], subsystem: str) -> None:
    agent, client, ids = box
    result = openssh(client, subsystem, b"7" * (16 * MB) + b"\n", timeout=60)
    one_line_refusal(result.returncode, result.stdout, result.stderr)
    assert b"longer than" in result.stderr
    agent_is_clean(agent, client, ids)


@pytest.mark.parametrize("payload", [b"\x00" * 100 + b"\n", b"\xff\xfe\xfd\n", b"", b"\n",
                                     b"0\n", b"\xe2\x80\xa6\n", b"a" * MB])
def test_malformed_ids_from_paramiko(box: tuple[Agent, Client, list[str]], payload: bytes) -> None:
    agent, client, ids = box
    for subsystem in ("continue", "console", "kill"):
        one_line_refusal(*paramiko_subsystem(client, subsystem, payload))
    agent_is_clean(agent, client, ids)


@pytest.mark.parametrize("value", ["", "   ", "\x00", "\u2026", "0", "x" * 30_000, "\u202e7f"])
def test_garbage_lager_breakpoint_env(box: tuple[Agent, Client, list[str]], value: str) -> None:
    agent, client, ids = box
    for subsystem in ("continue", "console"):
        one_line_refusal(*paramiko_subsystem(client, subsystem, None,
                                             env={protocol.ENV_BREAKPOINT_ID: value}))
    if "\x00" not in value:  # OpenSSH's SetEnv cannot carry a NUL
        result = openssh(client, "continue", b"", "-o", f"SetEnv=LAGER_BREAKPOINT={value!s}")
        one_line_refusal(result.returncode, result.stdout, result.stderr)
    agent_is_clean(agent, client, ids)


ABSURD_SIZES = ((2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1), (0, 0, 0, 0), (65536, 1, 0, 0),
                (1, 65536, 0, 0), (2**31, 2**31, 1, 1))


async def abuse_console(client: Client, ident: str) -> list[tuple[int | None, bytes]]:
    """A PTY of absurd size, then a flood of absurd window changes, on a live console."""
    conn = await connect(client)
    results = []
    try:
        for size in ABSURD_SIZES:
            chan, session = await conn.create_session(
                Collector, subsystem="console", term_type="xterm", term_size=size,
                encoding=None)
            chan.write(f"{ident}\n".encode())
            for i in range(300):
                chan.change_terminal_size(*ABSURD_SIZES[i % len(ABSURD_SIZES)])
            chan.write(b"print(6*7)\r")
            await asyncio.wait_for(_wait_for_bytes(session, b"42"), 30)
            chan.write_eof()
            await asyncio.wait_for(session.closed, 30)
            results.append((chan.get_exit_status(), bytes(session.out)))
    finally:
        conn.close()
    return results


async def _wait_for_bytes(session: Collector, needle: bytes) -> None:
    while needle not in session.out and not session.closed.done():
        await asyncio.sleep(0.02)


def test_live_console_survives_absurd_pty_sizes_and_window_floods(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "state")
    try:
        client = make_client(tmp_path / "laptop", agent)
        script = write_script(tmp_path, "p.py", "from lager import pause\n"
                              "pause('abuse', interactive=True, timeout=0)\nprint('after')\n")
        run = start_run(client, script)
        ident = run.banner_id()
        for status, out in asyncio.run(abuse_console(client, ident)):
            assert status in (0, None) and b"42" in out, (status, out[-300:])
        assert [state for _, state in run_ids_on_box(client)] == ["paused"]
        assert client.run("python", "--continue", ident).returncode == 0
        assert run.finish() == 0 and run.out.text == "after\n"
        assert "Traceback" not in agent.log()
    finally:
        agent.stop()


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose run dirs live on a real filesystem that fills up: a 2 MiB tmpfs
    (which needs the right to mount). The log stays on the roomy disk."""
    mount = tmp_path / "state" / "runs"
    mount.mkdir(parents=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        cannot_run(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount.parent
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_gets_one_line(small_disk: Path, tmp_path: Path) -> None:
    agent = start_agent(small_disk)
    try:
        client = make_client(tmp_path / "laptop", agent)
        big = 3 * MB
        head = {"script": "t.py", "main": "t.py", "args": [], "env": {}, "timeout": 0,
                "detach": True, "files": [{"path": "t.py", "size": 10},
                                          {"path": "data.bin", "size": big}]}
        request = json.dumps(head).encode() + b"\n" + b"print(1)\n\n" + b"\0" * big
        status, out, err = paramiko_subsystem(client, "run", request)
        one_line_refusal(status, out, err)
        assert b"no room for the upload" in err and b"internal error" not in err
        assert list((small_disk / "runs").iterdir()) == []
        assert "Traceback" not in agent.log()
        assert openssh(client, "list").returncode == 0
    finally:
        agent.stop()

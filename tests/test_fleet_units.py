"""The fleet's pure parts, no subprocess: which argv is a fleet's, BOX:ID rewriting, whole
lines cut at 64 KiB, the exit-code rule, the aggregated line and Enter's snapshot."""
from __future__ import annotations

import pytest

from client.fleet import recap
from client.fleet.output import LineSplitter
from client.fleet.pauses import PauseBoard, PauseEvent
from client.fleet.route import is_set_syntax, rewrite_box_id, wants_fleet


def test_set_syntax_and_single_box_forms() -> None:
    for fleet in ("bench[01-20]", "@line1", "@line1&@rack2", "@line1!bench07", "a,b", "a,",
                  "bench[07]"):
        assert is_set_syntax(fleet), fleet
    for single in ("bench07", "lab@box", "lab@box:2222", "box:2222", "[::1]:2222", "", None):
        assert not is_set_syntax(single), single


def test_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAGER_BOX", raising=False)
    assert wants_fleet(["python", "t.py", "--box", "bench[1-3]"])
    assert wants_fleet(["--box=@line1", "nets"])
    assert wants_fleet(["python", "--continue", "f-3c9a"])
    assert wants_fleet(["python", "--continue", "all", "--box", "x"])
    assert wants_fleet(["python", "--kill", "f-3c9a"])
    assert not wants_fleet(["python", "t.py", "--box", "bench01"])
    assert not wants_fleet(["python", "t.py", "--box", "bench01", "--", "--box", "a,b"])
    assert not wants_fleet(["boxes", "add", "x", "--host", "h", "--group", "g"])
    assert not wants_fleet(["python", "--continue", "7f3a"])
    assert not wants_fleet(["python", "t.py", "--box", "dut1", "--inventory", "i.yml"])
    assert wants_fleet(["python", "t.py", "--box", "@duts", "--inventory", "i.yml"])
    monkeypatch.setenv("LAGER_BOX", "@line1")  # $LAGER_BOX may be a set too
    assert wants_fleet(["nets"])


def test_inventory_flag_becomes_the_env_on_one_box(monkeypatch: pytest.MonkeyPatch) -> None:
    from client.fleet.route import inventory_to_env

    monkeypatch.setenv("LAGER_INVENTORY", "")  # restored after the test, whatever it sets
    assert inventory_to_env(["nets", "--box", "d1", "--inventory", "a.yml", "--json"]) == \
        ["nets", "--box", "d1", "--json"]
    assert inventory_to_env(["python", "--inventory=b.yml", "t.py", "--", "--inventory",
                             "x"]) == ["python", "t.py", "--", "--inventory", "x"]
    import os

    assert os.environ["LAGER_INVENTORY"] == "b.yml"
    kept = ["boxes", "import", "--inventory", "c.yml"]
    assert inventory_to_env(kept) == kept


def test_route_fleet_ids_agree_with_the_protocol() -> None:
    from client.fleet.route import is_fleet_id
    from lager.protocol import valid_fleet_id

    for value in ("f-3c9a", "f-3c9", "f-3C9A", "f-" + "a" * 16, "f-" + "a" * 17, "g-3c9a",
                  "f-3c9g", "f-", "7f3a"):
        assert is_fleet_id(value) == valid_fleet_id(value), value


def test_box_id_becomes_todays_command() -> None:
    assert rewrite_box_id(["python", "--continue", "bench07:7f3a\u2026e9"]) == \
        ["python", "--continue", "7f3a\u2026e9", "--box", "bench07"]
    assert rewrite_box_id(["python", "--console=b1:7f3a", "--", "x"]) == \
        ["python", "--console=7f3a", "--box", "b1", "--", "x"]
    assert rewrite_box_id(["python", "--continue", "7f3a"]) is None
    assert rewrite_box_id(["python", "--continue", "f-3c9a"]) is None
    assert rewrite_box_id(["python", "--continue", "lab@box:7f3a"]) is None
    assert rewrite_box_id(["python", "--kill", "b1:7f3a#2"]) == \
        ["python", "--kill", "7f3a#2", "--box", "b1"]


def test_lines_stay_whole_and_are_cut_at_the_limit() -> None:
    split = LineSplitter(limit=8)
    assert split.feed(b"ab") == []
    assert split.feed(b"c\nde") == [b"abc\n"]
    assert split.feed(b"fghijklmn") == [b"defghijk\n"]
    assert split.feed(b"\n" + b"x" * 20 + b"\n") == [b"lmn\n", b"x" * 8 + b"\n",
                                                   b"x" * 8 + b"\n", b"xxxx\n"]
    assert split.feed(b"tail") == [] and split.end() == [b"tail\n"] and split.end() == []


def _rows(*states: tuple[str, int | None]) -> list[recap.Row]:
    rows = []
    for i, (state, code) in enumerate(states):
        row = recap.Row(box=f"b{i}")
        if state == "unreachable":
            row.state, row.exit = state, 255
        elif code is not None:
            row.settle(code)
        rows.append(row)
    return rows


def test_exit_code_rule() -> None:
    assert recap.exit_code(_rows(("", 0), ("", 0))) == 0
    assert recap.exit_code(_rows(("", 3), ("", 0), ("", 3))) == 3
    assert recap.exit_code(_rows(("", 3), ("", 5))) == 1
    assert recap.exit_code(_rows(("", 0), ("unreachable", None))) == 255
    assert recap.exit_code(_rows(("", 124), ("unreachable", None))) == 124
    assert recap.exit_code(_rows(("", 130))) == 130
    assert [r.state for r in _rows(("", 0), ("", 124), ("", 137), ("", 2), ("", 255))] == \
        ["ok", "timeout", "killed", "failed", "failed"]


def test_after_ctrl_c_the_rows_code_unless_a_box_never_ended() -> None:
    assert recap.interrupted_code(_rows(("", 0), ("", 0))) == 0  # caught SIGINT, exited 0
    assert recap.interrupted_code(_rows(("", 130), ("", 130))) == 130
    assert recap.interrupted_code(_rows(("", 0), ("", 3))) == 3
    assert recap.interrupted_code(_rows(("", 0), ("", None))) == 130  # one never started
    waiting = _rows(("", 0), ("", None))
    waiting[1].state = recap.WAITING
    assert recap.interrupted_code(waiting) == 130


def test_enter_resumes_the_pauses_of_that_moment_only() -> None:
    shown: list[str] = []
    resumed: list[PauseEvent] = []
    board = PauseBoard("f-3c9a", shown.append, resumed.append)
    for box in ("bench01", "bench02", "bench03"):
        board.started(box)
    assert board.enter() == [] and resumed == []  # an early Enter arms nothing
    first = PauseEvent("bench01", "aa", 1, "check", "t.py", 19, None)
    board.paused_at(first)
    board.paused_at(PauseEvent("bench02", "bb", 1, "check", "t.py", 19, None))
    assert shown[-1] == ('=== 2/3 paused at t.py:19 "check" (running: bench03)  resume: '
                         'Enter, or lager python --continue f-3c9a')
    assert sorted(e.box for e in board.enter()) == ["bench01", "bench02"]
    board.resumed("bench01")
    board.paused_at(PauseEvent("bench03", "cc", 1, "check", "t.py", 19, None))
    assert board.lines() == ['=== 2/3 paused at t.py:19 "check" (running: bench01)  resume: '
                             'Enter, or lager python --continue f-3c9a']
    for box in ("bench04", "bench05"):
        board.started(box)
    assert "(running: bench[01,04-05])" in board.lines()[0]  # folded, as everywhere


def test_junit_has_one_case_per_box_with_each_outcome(tmp_path: object) -> None:
    from pathlib import Path

    from junitparser import Error, Failure, JUnitXml, Skipped

    from client.config import Box
    from client.fleet.junit import write_junit
    from client.fleet.targets import Fleet, Target

    rows = [recap.Row("b1", run_id="aa" * 8), recap.Row("b2", run_id="bb" * 8),
            recap.Row("b3", state="unreachable", exit=255, reason="refused"),
            recap.Row("b4"), recap.Row("b5", run_id="cc" * 8)]
    rows[0].settle(0)
    rows[1].settle(3)
    rows[4].settle(124)
    fleet = Fleet("b[1-5]", [Target(r.box, Box(r.box, "h"), i, "") for i, r in enumerate(rows)])
    path = Path(str(tmp_path)) / "r.xml"
    write_junit(str(path), "f-3c9a", fleet, "t.py", rows, {"b2": b"x" * 70000 + b"boom"}, None)
    suite = next(iter(JUnitXml.fromfile(str(path))))
    kinds = {case.classname: [type(r).__name__ for r in case.result] for case in suite}
    assert kinds == {"lager.fleet.b1": [], "lager.fleet.b2": [Failure.__name__],
                     "lager.fleet.b3": [Error.__name__], "lager.fleet.b4": [Skipped.__name__],
                     "lager.fleet.b5": [Error.__name__]}
    failure = next(r for case in suite for r in case.result if isinstance(r, Failure))
    assert failure.message == "exit 3" and failure.text.endswith("boom")
    assert len(failure.text) == 64 * 1024
    assert path.read_text().index("<properties>") < path.read_text().index("<testcase")
    said = {case.classname: case.system_out for case in suite}
    assert said["lager.fleet.b4"] == "b4: no run"  # never started: no run id to name
    assert said["lager.fleet.b2"] == f"run {'bb' * 8} on b2; full log: lager python " \
        f"--reattach {'bb' * 8} --box b2"
    write_junit(str(path), "f-3c9a", fleet, "t.py", rows, {}, "logs")
    said = {c.classname: c.system_out for c in next(iter(JUnitXml.fromfile(str(path))))}
    assert said["lager.fleet.b4"] == "b4: no run; output: logs/b4.stdout"


def test_a_pause_notice_is_a_pause_event() -> None:
    import time

    from client.fleet.pause_adapter import pause_event_of
    from lager.protocol.events import PauseNotice

    notice = PauseNotice(run_id="ab" * 8, seq=2, file="t.py", line=19, label="check",
                         timeout=300.0, remaining=120.0)
    before = time.monotonic()
    event = pause_event_of("bench07", notice)
    assert (event.box, event.run_id, event.seq, event.file, event.line, event.label) == \
        ("bench07", "ab" * 8, 2, "t.py", 19, "check")
    assert event.deadline is not None and before + 120 <= event.deadline <= time.monotonic() + 120
    assert pause_event_of("b", PauseNotice(run_id="c", seq=1, file="f", line=1)).deadline is None


def test_raise_nofile_limit_in_a_child_process() -> None:
    """In a child (the limit is the process's): a soft limit of 32 rises to the hard one, a
    lowered hard limit is respected, and soft == hard stays as it is."""
    import subprocess
    import sys

    child = (
        "import resource, sys\n"
        "from client.fleet.fanout import raise_nofile_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "cap = int(sys.argv[1])\n"
        "if cap:\n"
        "    hard = cap\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), hard))\n"
        "got = raise_nofile_limit()\n"
        "print(got, *resource.getrlimit(resource.RLIMIT_NOFILE), hard)\n")
    for cap, start in ((0, 32), (100, 32), (64, 64)):
        done = subprocess.run([sys.executable, "-c", child, str(cap), str(start)],
                              capture_output=True, text=True, timeout=60, check=True)
        got, soft, hard_now, hard = (int(x) for x in done.stdout.split())
        assert hard_now == hard
        assert got == soft, done.stdout
        if hard == resource_infinity():
            assert soft in (65536, 10240)
        else:
            assert soft == hard, (cap, start, done.stdout)


def resource_infinity() -> int:
    import resource

    return int(resource.RLIM_INFINITY)

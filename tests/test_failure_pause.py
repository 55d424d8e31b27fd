"""Pause on failure (issue 15): an unhandled exception pauses where it was raised, before any
`finally` or `__exit__` runs; the console sees the failing frames and the live bench; resuming
lets the exception go on with its own traceback and exit code."""
from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import Client, LiveRun, start_run, write_script

# The helper raises on line 8; the `with` keeps supply2 claimed and on until its __exit__.
FAILING = """from lager import Net, NetType

SETTING = 5.0


def check_rail(psu, limit):
    reading = 4.2
    raise ValueError(f"reading {reading} below {limit}")


with Net.get("supply2", type=NetType.PowerSupply) as psu:
    psu.set_voltage(SETTING)
    psu.enable()
    try:
        check_rail(psu, SETTING)
    finally:
        print("finally ran", flush=True)
"""


def failure_banner(run: LiveRun) -> str:
    run.err.wait_for("auto-resume in")
    return run.err.text


def listed(client: Client, ident: str) -> dict:
    rows = json.loads(client.run("python", "--list", "--json").stdout)
    return next(r for r in rows if r["short_id"] == ident)


def test_failure_pauses_at_the_raising_frame_and_continue_propagates(
        client: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "test.py", FAILING)
    run = start_run(client, script, "--pause-on-failure")
    ident = run.banner_id()
    err = failure_banner(run)
    where = f"{script}:8"
    banner = (f"=== lager breakpoint (failure: ValueError: reading 4.2 below 5.0) at {where}  "
              f"(id {ident})\n"
              f"    resume: press Enter here, or `lager python --continue {ident} --box mybox`\n"
              f"    inspect: `lager python --console {ident} --box mybox`\n"
              "    auto-resume in 300s\n")
    assert err.endswith(banner), err
    above = err[:-len(banner)]
    assert above.startswith("Traceback (most recent call last):\n")
    assert re.search(r'line 15, in <module>\n\s+check_rail\(psu, SETTING\)\n.*line 8, in '
                     r'check_rail\n\s+raise ValueError', above, re.S), above
    assert above.endswith("ValueError: reading 4.2 below 5.0\n")
    assert "finally ran" not in run.out.text  # paused before any cleanup

    row = listed(client, ident)
    assert row["state"] == "paused"
    assert row["pause"]["label"] == "failure: ValueError: reading 4.2 below 5.0"
    assert (row["pause"]["file"], row["pause"]["line"], row["pause"]["console"]) == \
        (str(script), 8, True)
    human = client.run("python", "--list").stdout
    assert f'paused "failure: ValueError: reading 4.2 below 5.0" at {where}' in human

    console = client.run("python", "--console", ident, input=(
        "reading, limit\n"
        "type(exc).__name__, str(exc)\n"
        "st = psu.state()\n"
        "print('STATE', st.enabled, round(st.voltage, 3))\n"
        "frames()\n"
        "frame(0)\n"
        "'reading' in dir(), SETTING\n"
        "frame(-1)\n"
        "reading * 2\n"))
    assert console.returncode == 0, console.stderr
    out = console.stdout
    assert f"paused at (failure: ValueError: reading 4.2 below 5.0) {where}" in out
    assert "(4.2, 5.0)" in out  # a local of the helper
    assert "('ValueError', 'reading 4.2 below 5.0')" in out
    assert "Enabled: ON" in out and "Voltage: 5.0000" in out  # the real lager's state block
    assert "STATE True 5.0" in out  # through the script's own handle, still claimed
    assert re.search(r"  0  \S*test\.py:15 in <module>\n>  1  \S*test\.py:8 in check_rail", out)
    assert "now in frame 0:" in out and "(False, 5.0)" in out
    assert "8.4" in out  # back in the helper's frame
    # The supply is the script's, still claimed: another terminal is told so.
    busy = client.run("supply", "supply2", "state")
    assert busy.returncode != 0 and "failure: ValueError" in busy.stderr

    resumed = client.run("python", "--continue", ident)
    assert resumed.returncode == 0, resumed.stderr
    assert run.finish() == 1
    assert run.out.text == "finally ran\n"
    tail = run.err.text[len(err):]
    assert tail.startswith("=== resumed\nTraceback (most recent call last):\n")
    assert re.search(r"line 8, in check_rail\n\s+raise ValueError.*\nValueError: reading 4.2 "
                     r"below 5.0\n", tail), tail
    assert tail.endswith("lager: safe state: supply2 off\n")


def test_env_switch_and_auto_resume_propagate_the_same_exit(client: Client,
                                                            tmp_path: Path) -> None:
    script = write_script(tmp_path, "envsw.py", "import sys\nimport lager\n\n"
                          "def fail():\n    sys.exit(int('x'))\n\nfail()\n")
    result = client.run("python", str(script), "--env", "LAGER_PAUSE_ON_FAILURE=1",
                        "--env", "LAGER_BREAKPOINT_TIMEOUT=0.5")
    assert result.returncode == 1
    assert f"(failure: ValueError: invalid literal for int() with base 10: 'x') at {script}:5" \
        in result.stderr
    assert "    auto-resume in 0.5s\n=== auto-resumed after 0.5s\nTraceback" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: invalid literal for int() with base 10: "
                                           "'x'")


def test_an_error_raised_inside_lager_pauses_in_the_users_frame(client: Client,
                                                                tmp_path: Path) -> None:
    script = write_script(tmp_path, "lib.py", "from lager import Net\n\n\n"
                          "def open_rail():\n    return Net.get('supply9')\n\n\nopen_rail()\n")
    result = client.run("python", str(script), "--pause-on-failure",
                        "--env", "LAGER_BREAKPOINT_TIMEOUT=0.5")
    assert result.returncode == 1
    assert "(failure: UnknownNet: no net 'supply9' on this bench; nets: " in result.stderr
    assert re.search(r"\) at \S*lib\.py:5  \(id ", result.stderr), result.stderr
    # then, uncaught, it ends the run in one line (lager/uncaught.py)
    assert result.stderr.rstrip().splitlines()[-1].startswith("lager: no net 'supply9'")


def test_in_script_switch_other_threads_and_breakpoints_off(client: Client,
                                                            tmp_path: Path) -> None:
    script = write_script(tmp_path, "threads.py", """import threading
import lager

lager.pause_on_failure()


def worker():
    raise KeyError("in a thread")


t = threading.Thread(target=worker, name="worker")
t.start()
t.join()
print("main goes on", flush=True)
raise RuntimeError("main fails")
""")
    result = client.run("python", str(script), "--env", "LAGER_BREAKPOINT_TIMEOUT=0.5")
    assert result.returncode == 1
    assert "KeyError: 'in a thread'" in result.stderr
    assert ("lager: the exception in thread 'worker' was not paused: pause on failure covers "
            "the main thread only") in result.stderr
    assert result.stderr.count("=== lager breakpoint") == 1
    assert f"(failure: RuntimeError: main fails) at {script}:15" in result.stderr
    assert result.stdout == "main goes on\n"

    off = client.run("python", str(script), "--pause-on-failure",
                     "--env", "LAGER_BREAKPOINTS=off")
    assert off.returncode == 1
    assert "=== lager breakpoint" not in off.stderr
    assert off.stderr.rstrip().endswith("RuntimeError: main fails")


HANDLED = """import contextlib, sys
from lager import pause_on_failure


class Sensor:
    @property
    def missing(self):
        raise AttributeError("no such reading")


def parse(text):
    try:
        return int(text)
    except ValueError:
        return -1


with contextlib.suppress(KeyError):
    {}["absent"]
try:
    with open("/nonexistent/file") as f:
        pass
except OSError:
    pass
print(parse("x"), hasattr(Sensor(), "missing"), getattr(Sensor(), "missing", "dflt"))
it = iter([1])
print(next(it), next(it, "end"), flush=True)


class Swallow:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


with Swallow():
    raise ValueError("swallowed by __exit__")


@contextlib.contextmanager
def guarded():
    try:
        yield
    except ZeroDivisionError:
        pass


with guarded():
    1 / 0


def log_and_raise():
    try:
        {}["key"]
    except KeyError:
        print("logged", flush=True)
        raise


if sys.argv[1:] == ["reraise"]:
    try:
        log_and_raise()
    finally:
        print("cleanup", flush=True)
"""


def test_handled_exceptions_do_not_pause_and_a_log_and_reraise_does(client: Client,
                                                                    tmp_path: Path) -> None:
    script = write_script(tmp_path, "handled.py", HANDLED)
    clean = client.run("python", str(script), "--pause-on-failure")
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout == "-1 False dflt\n1 end\n"
    assert "lager breakpoint" not in clean.stderr

    run = start_run(client, script, "reraise", "--pause-on-failure")
    ident = run.banner_id()
    run.err.wait_for("auto-resume in")
    assert f"(failure: KeyError: 'key') at {script}:56" in run.err.text
    assert run.out.text == "-1 False dflt\n1 end\n"  # neither the except body nor the finally
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 1
    assert run.out.text.endswith("logged\ncleanup\n")


PYTEST_MAIN = """import sys
import pytest

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "test_dut.py"]))
"""
PYTEST_FILE = """import pytest
from lager import Net, NetType


@pytest.fixture
def psu():
    with Net.get("supply2", type=NetType.PowerSupply) as net:
        net.set_voltage(3.3)
        net.enable()
        yield net
        print("fixture teardown")


def test_passes():
    assert True


def test_rail(psu):
    measured = round(psu.measured_voltage(), 1)
    assert measured == 5.0, "rail too low"
"""


def test_pytest_main_pauses_at_the_failing_assertion(client: Client, tmp_path: Path) -> None:
    project = tmp_path / "suite"
    write_script(project, "main.py", PYTEST_MAIN)
    write_script(project, "test_dut.py", PYTEST_FILE)
    run = start_run(client, project, "--pause-on-failure")
    ident = run.banner_id()
    run.err.wait_for("auto-resume in")
    assert "(failure: AssertionError: rail too low) at test_dut.py:20" in run.err.text
    assert 'test_dut.py", line 20, in test_rail\n' in run.err.text  # the test, not pytest
    console = client.run("python", "--console", ident,
                         input="measured\npsu.read_state().enabled\nframes()\n")
    assert "3.3\nTrue\n>  0  test_dut.py:20 in test_rail\n" in console.stdout
    assert client.run("python", "--continue", ident).returncode == 0
    assert run.finish() == 1
    assert "1 failed, 1 passed" in run.out.text
    assert "fixture teardown" in run.out.text  # after the resume: the fixture was still up

"""client/script_fastpath.py starts `lager python SCRIPT` without click. For every argv it
takes, the click command must mean the same run: the same script, the same arguments for it,
the same box, and every other option at its default. Anything else it must leave to click.

Click's side is click's own parser and the CLI's own callbacks (test_fastpath_vs_click's
_click_params). The argv come from a table, from every short mix of tricky tokens, and from
hypothesis (code we did not write, generating argv we would not think of). The failures are
compared whole, as processes: the same line and exit code from both ways.
"""
from __future__ import annotations

import inspect
import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_agreement import disagreements
from test_fastpath_vs_click import _click_params

from client import script_fastpath, script_run
from client.commands import python as python_command
from client.commands.option_scan import option_arities
from client.config import Box, Config
from client.script_fastpath import ScriptCall

Meaning = tuple[str, tuple[str, ...], str | None] | str

# The python command's parameters the common form leaves at their defaults.
_LEFT_AT_DEFAULT = {"env": (), "passenv": (), "timeout": "0", "detach": False,
                    "stop_on_disconnect": False, "downloads": (), "reconnect_for": None,
                    "allow_overwrite": False, "add_files": (), "pause_on_failure": False,
                    "wait": None, "ports": (), "continue_id": None, "console_id": None,
                    "reattach_id": None, "kill_id": None, "kill_all_runs": False,
                    "any_owner": False, "yes": False, "signal_name": None, "list_runs": False,
                    "as_json": False}


def click_meaning(argv: list[str]) -> Meaning:
    """(script, its args, box) as the click command runs it; else what click does instead."""
    parsed = _click_params(argv)
    if isinstance(parsed, str):
        return parsed
    name, p, box = parsed
    if name != "python" or not p["script"]:
        return "other"
    if any(p[k] != v for k, v in _LEFT_AT_DEFAULT.items()):
        return "other"
    if p["safe_state"] != script_run.run.__kwdefaults__["safe_state"]:  # type: ignore[index]
        return "other"
    return (p["script"], tuple(p["args"]), box)


def fast_meaning(argv: list[str]) -> Meaning | None:
    call = script_fastpath.parse(list(argv))
    return None if call is None else (call.script, tuple(call.args), call.box)


@pytest.fixture(autouse=True)
def _config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGER_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("LAGER_BOX", raising=False)


def test_the_option_names_are_the_commands() -> None:
    """The fast path knows every option name of the command (a new option, unknown to it,
    would otherwise be passed to the script)."""
    cmd = python_command.python
    with click.Context(cmd, info_name="python", help_option_names=["-h", "--help"]) as ctx:
        names = set(option_arities(cmd, ctx)) | set(cmd.get_help_option_names(ctx))
    assert {n for n in names if n.startswith("--")} == script_fastpath.COMMAND_OPTIONS
    assert {n[1] for n in names if not n.startswith("--")} == script_fastpath.SHORT_LETTERS


def test_the_defaults_are_the_commands() -> None:
    """What script_run.run assumes for an option not given is what the command's body makes
    of that option's value when it is not given (click's parse of a bare `python t.py`)."""
    parsed = _click_params(["python", "t.py"])
    assert not isinstance(parsed, str)
    given = parsed[1]
    run = inspect.signature(script_run.run).parameters
    assert python_command._parse_timeout(given["timeout"]) == run["timeout"].default == 0.0
    assert given["safe_state"] == run["safe_state"].default
    for flag in ("detach", "pause_on_failure"):
        assert given[flag] is run[flag].default is False
    assert given["allow_overwrite"] is run["overwrite"].default is False
    assert given["wait"] is run["wait"].default is None
    assert given["env"] == given["passenv"] == () and run["env"].default is None
    assert given["downloads"] == run["downloads"].default == ()
    assert given["add_files"] == run["add_files"].default == ()
    # Not given, --stop-on-disconnect is decided by CI=true: run's None asks for that rule.
    assert run["stop_on_disconnect"].default is None


ANSWERED = [
    (["python", "test.py"], ("test.py", (), "envbox")),
    (["python", "test.py", "--box", "lab"], ("test.py", (), "lab")),
    (["python", "--box", "lab", "test.py", "a", "b"], ("test.py", ("a", "b"), "lab")),
    (["python", "--box=a", "test.py", "--box", "lab", "x"], ("test.py", ("x",), "lab")),
    (["python", "dir", "-v", "--verbose=2", "-x", "--", "--box", "b", "--"],
     ("dir", ("-v", "--verbose=2", "-x", "--box", "b", "--"), "envbox")),
    (["python", "t.py", "-", "-1", "--box=lab=2", "+d"], ("t.py", ("-", "-1", "+d"), "lab=2")),
    (["python", "t.py", "--", "--"], ("t.py", ("--",), "envbox")),
    (["python", "t.py", "-vx=1"], ("t.py", ("-vx=1",), "envbox")),
    (["python", "t py", "\u00e9 \n", ""], ("t py", ("\u00e9 \n", ""), "envbox")),
]

LEFT_TO_CLICK = [
    ["python"],
    ["python", "--box", "lab"],  # no script
    ["python", ""],
    ["python", "-d", "test.py"],
    ["python", "test.py", "--detach"],
    ["python", "test.py", "-vd"],  # click takes -d out of the cluster
    ["python", "test.py", "-p", "80"],
    ["python", "test.py", "-h"],
    ["python", "test.py", "--help"],
    ["python", "test.py", "--timeout", "5"],
    ["python", "test.py", "--env=A=1"],
    ["python", "test.py", "--list"],
    ["python", "test.py", "--box"],
    ["python", "test.py", "--box="],
    ["python", "test.py", "--box", "-x"],
    ["python", "--", "test.py"],
    ["python", "-x", "test.py"],
    ["--box", "lab", "python", "test.py"],
    ["--debug", "python", "test.py"],
    ["py", "test.py"],
]


@pytest.mark.parametrize(("argv", "want"), ANSWERED)
def test_forms_the_fast_path_runs(argv: list[str], want: Meaning,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGER_BOX", "envbox")
    assert fast_meaning(argv) == want
    assert click_meaning(argv) == want


@pytest.mark.parametrize("argv", LEFT_TO_CLICK)
def test_forms_the_fast_path_leaves_to_click(argv: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGER_BOX", "envbox")
    assert fast_meaning(argv) is None


def test_no_box_anywhere_is_the_same_too() -> None:
    assert fast_meaning(["python", "t.py"]) == click_meaning(["python", "t.py"]) == \
        ("t.py", (), None)


_TOKENS = ["t.py", "--box", "lab", "--box=", "--", "-", "-v", "-d", "-vd", "--json", "--x=1",
           "-h", "", "5"]


def test_every_short_argv_means_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `python` argv of up to four of these tokens, in every order."""
    monkeypatch.setenv("LAGER_BOX", "envbox")
    argvs = [["python", *rest] for size in range(5)
             for rest in itertools.product(_TOKENS, repeat=size)]
    answered, problems = disagreements(argvs, fast_meaning, click_meaning)
    assert answered > 1000  # the table reaches the forms the fast path takes
    assert not problems, f"{len(problems)} of {answered} disagree, e.g. {problems[:5]}"


_LAGERS = sorted(script_fastpath.COMMAND_OPTIONS)
_token = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["--", "-", "--box", "--box=", "--box=b"]),
    st.builds(lambda name, eq, value: name + eq + value, st.sampled_from(_LAGERS),
              st.sampled_from(["", "="]), st.text(max_size=3)),
    st.builds(lambda dash, text: dash + text, st.sampled_from(["-", "--"]),
              st.text(alphabet="dphvx=-1 ", max_size=4)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(_token, max_size=7))
def test_generated_argv_means_the_same(tokens: list[str]) -> None:
    argv = ["python", *tokens]
    fast = fast_meaning(argv)
    if fast is not None:
        assert click_meaning(argv) == fast, argv


def test_the_call_compares_by_value() -> None:
    assert ScriptCall("a", ["b"], "c") == ScriptCall("a", ["b"], "c") != ScriptCall("a", [], "c")
    assert "box='c'" in repr(ScriptCall("a", ["b"], "c"))


# --- the same failure, both ways (real processes) ---

_BOTH_WAYS = {
    "fast": "import sys; sys.argv[0] = 'lager'; from client.entry import main; main()",
    "click": "import sys; sys.argv[0] = 'lager'; from client.cli import main; main()",
}


def _both(argv: list[str], env: dict[str, str]) -> dict[str, tuple[int, str, str]]:
    done = {}
    for way, code in _BOTH_WAYS.items():
        proc = subprocess.run([sys.executable, "-c", code, *argv], env=env,
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        done[way] = (proc.returncode, proc.stdout, proc.stderr)
    return done


def test_bad_input_fails_the_same_both_ways(tmp_path: Path) -> None:
    """No such script, a directory without main.py, no such box, no box at all, a box that
    refuses the connection: one line, the same line and code, from both ways."""
    config = tmp_path / "laptop"
    env = {k: v for k, v in os.environ.items() if k not in ("LAGER_BOX", "LAGER_DEBUG")}
    env["LAGER_CONFIG_DIR"] = str(config)
    script = tmp_path / "t.py"
    script.write_text("print(1)\n")
    (tmp_path / "empty").mkdir()
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    Config(config).add_box(Box(name="closed", host="127.0.0.1", port=port))
    cases = [(["python", str(tmp_path / "missing.py"), "--box", "closed"], 2, "not found"),
             (["python", str(tmp_path / "empty"), "--box", "closed"], 2, "main.py"),
             (["python", str(script), "--box", "nosuch"], None, "nosuch"),
             (["python", str(script)], None, "box"),
             (["python", str(script), "--box", "closed"], 255, "refused")]
    for argv, status, says in cases:
        assert script_fastpath.parse(argv) is not None, argv  # the fast way takes it
        done = _both(argv, env)
        assert done["fast"] == done["click"], (argv, done)
        code, out, err = done["fast"]
        assert code != 0 and (status is None or code == status), (argv, done)
        assert out == "" and err.startswith("Error: ") and err.count("\n") == 1, (argv, err)
        assert says in err, (argv, err)

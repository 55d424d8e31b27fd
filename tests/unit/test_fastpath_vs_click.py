"""client/fastpath.py answers `lager python --continue ID [--box B]` without loading click. It
must never answer an argv that the click CLI would read differently: for every argv the fast
path accepts, click must mean exactly "continue ID on box B", with the same ID and B.

Click's side is click's own parser and the CLI's own callbacks, run the way click's
Group.invoke runs them, stopping short of the command body (which would connect to the box).
"""
from __future__ import annotations

import itertools
from typing import Any

import click
import pytest

from client import fastpath
from client.cli import cli
from client.commands.python import _id_arg
from client.context import LagerContext
from lager.errors import LagerError

# What `python --continue ID` leaves at their defaults; any other value means a different
# command (a script, a second mode, an option the fast path would ignore).
_CONTINUE_ONLY_DEFAULTS = {"script": None, "args": (), "env": (), "timeout": "0",
                           "detach": False, "add_files": (), "console_id": None,
                           "reattach_id": None, "kill_id": None, "signal_name": None,
                           "list_runs": False, "as_json": False, "passenv": (),
                           "stop_on_disconnect": False, "ports": (), "kill_all_runs": False,
                           "any_owner": False, "yes": False, "pause_on_failure": False,
                           "safe_state": "on-failure", "downloads": ()}


def click_meaning(argv: list[str]) -> Any:
    """("continue", id, box) when click reads argv as exactly that; otherwise a short word
    for what click does instead ("usage", "exit", "other")."""
    try:
        with cli.make_context("lager", list(argv)) as ctx:
            # Group.invoke, up to the subcommand's own invoke:
            args = [*ctx._protected_args, *ctx.args]
            ctx.args, ctx._protected_args = [], []
            name, cmd, rest = cli.resolve_command(ctx, args)
            assert cmd is not None
            ctx.invoked_subcommand = name
            click.Command.invoke(cli, ctx)  # the group's callback: --debug, --box
            with cmd.make_context(name, rest, parent=ctx) as sub:
                params = dict(sub.params)
                obj = sub.find_object(LagerContext)
                box = obj.box_name if obj else None
                debug = obj.debug if obj else False
    except click.exceptions.Exit:
        return "exit"  # --help
    except click.UsageError:
        return "usage"
    if name != "python" or params.get("continue_id") is None or debug:
        return "other"
    if any(params.get(k) != v for k, v in _CONTINUE_ONLY_DEFAULTS.items()):
        return "other"
    try:
        run_id = _id_arg(params["continue_id"])
    except LagerError:  # lager's UsageError: one line, exit 2
        return "usage"
    return ("continue", run_id, box)


def fast_meaning(argv: list[str]) -> tuple[str, str, str] | None:
    """What the fast path answers, or None when it falls through to click."""
    parsed = fastpath._parse(list(argv))
    if parsed is None or not parsed[1]:
        return None  # try_continue falls through without a box, too
    return ("continue", parsed[0], parsed[1])


@pytest.fixture(autouse=True)
def _config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGER_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("LAGER_BOX", raising=False)


ACCEPTED = [
    (["python", "--continue", "7f3a", "--box", "lab"], None, ("7f3a", "lab")),
    (["python", "--box", "lab", "--continue", "7f3a"], None, ("7f3a", "lab")),
    (["python", "--continue=7f3a", "--box=lab"], None, ("7f3a", "lab")),
    (["python", "--continue", "7f3a\u2026e9", "--box", "lab"], None, ("7f3a\u2026e9", "lab")),
    (["python", "--continue", " 7f3a ", "--box", "lab"], None, ("7f3a", "lab")),
    (["python", "--continue", "7f3a"], "envbox", ("7f3a", "envbox")),
    (["python", "--continue", "7f3a", "--box", "lab"], "envbox", ("7f3a", "lab")),
    (["python", "--box", "a", "--box", "b", "--continue", "7f3a"], None, ("7f3a", "b")),
    (["python", "--continue", "-h", "--box", "lab"], None, ("-h", "lab")),
    (["python", "--continue", "--", "--box", "lab"], None, ("--", "lab")),
]

REFUSED = [
    ["python", "--continue", "7f3a"],  # no box anywhere
    ["python", "--continue"],
    ["python", "--continue", ""],
    ["python", "--continue", "   "],
    ["python", "--continue", "a\nb", "--box", "lab"],
    ["python", "--continue", "a", "--continue", "b", "--box", "lab"],
    ["python", "--continue", "7f3a", "--box"],
    ["python", "--continue", "7f3a", "--box", "lab", "--json"],
    ["python", "--continue", "7f3a", "--box", "lab", "--", "x"],
    ["python", "--continue", "7f3a", "--box", "lab", "extra"],
    ["python", "--cont", "7f3a", "--box", "lab"],
    ["python", "--Continue", "7f3a", "--box", "lab"],
    ["--box", "lab", "python", "--continue", "7f3a"],
    ["--debug", "python", "--continue", "7f3a", "--box", "lab"],
    ["python", "-h"],
    ["py", "--continue", "7f3a", "--box", "lab"],
    [],
]


@pytest.mark.parametrize(("argv", "env_box", "want"), ACCEPTED)
def test_forms_the_fast_path_answers(argv: list[str], env_box: str | None,
                                     want: tuple[str, str], monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    if env_box:
        monkeypatch.setenv("LAGER_BOX", env_box)
    assert fast_meaning(argv) == ("continue", *want)
    assert click_meaning(argv) == ("continue", *want)


@pytest.mark.parametrize("argv", REFUSED)
def test_forms_the_fast_path_leaves_to_click(argv: list[str]) -> None:
    assert fast_meaning(argv) is None


_TOKENS = ["--continue", "--continue=7f3a", "7f3a", "--box", "--box=lab", "lab", "--box=",
           "", " ", "--", "-h", "--json", "--console", "x.py", "--continue=", "a=b"]


@pytest.mark.parametrize("env_box", [None, "envbox"])
def test_every_short_argv_means_the_same_to_both(env_box: str | None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every argv of up to four tokens after `python`: where the fast path answers, click
    agrees on the id and the box."""
    if env_box:
        monkeypatch.setenv("LAGER_BOX", env_box)
    checked = disagree = 0
    problems = []
    for size in range(5):
        for rest in itertools.product(_TOKENS, repeat=size):
            argv = ["python", *rest]
            fast = fast_meaning(argv)
            if fast is None:
                continue
            checked += 1
            slow = click_meaning(argv)
            if slow != fast:
                disagree += 1
                problems.append((argv, fast, slow))
    assert checked > 20  # the table does reach forms the fast path takes
    assert not problems, f"{disagree} of {checked} disagree, e.g. {problems[:5]}"

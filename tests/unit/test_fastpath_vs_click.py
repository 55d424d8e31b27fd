"""client/fastpath.py answers the short commands without loading click (`parse_command`, what
try_fast sends). It must never answer an argv that the click CLI reads differently: for every
argv the fast path takes, click must mean the same request, to the same box, shown the same
way (JSON or not).

Click's side is click's own parser and the CLI's own callbacks (the group's --box, the
commands' parse_args), run as click's Group.invoke runs them, stopping short of the command
body (which would connect to the box). The python command's choice of mode is read from its
parameters as its body reads them; a kind's request is built by Kind.request, which the body
calls.
"""
from __future__ import annotations

import itertools
import json
from typing import Any

import click
import pytest
from parser_agreement import disagreements

from client import fastpath
from client.cli import cli
from client.commands.python import _id_arg
from client.context import LagerContext
from lager import protocol
from lager.bench import kinds
from lager.bench.kinds.spec import NUMBER, WORD, Kind
from lager.errors import LagerError
from lager.protocol.channel import InstrumentRequest

Meaning = tuple[str, Any, str | None, bool] | str

# `lager python`'s parameters that no short form sets: any other value is a script run or a
# usage error (click's "other"), never a request the fast path makes.
_PYTHON_DEFAULTS = {"script": None, "args": (), "env": (), "timeout": "0", "detach": False,
                    "add_files": (), "reattach_id": None, "passenv": (),
                    "stop_on_disconnect": False, "ports": (), "kill_all_runs": False,
                    "any_owner": False, "yes": False, "pause_on_failure": False,
                    "safe_state": protocol.SAFE_STATE_ON_FAILURE, "downloads": (), "wait": None}


def _click_params(argv: list[str]) -> tuple[str, dict[str, Any], str | None] | str:
    try:
        with cli.make_context("lager", list(argv)) as ctx:
            # Group.invoke, up to the subcommand's own invoke:
            args = [*ctx._protected_args, *ctx.args]
            ctx.args, ctx._protected_args = [], []
            name, cmd, rest = cli.resolve_command(ctx, args)
            assert cmd is not None and name is not None
            ctx.invoked_subcommand = name
            click.Command.invoke(cli, ctx)  # the group's callback: --debug, --box
            with cmd.make_context(name, rest, parent=ctx) as sub:
                obj = sub.find_object(LagerContext)
                if obj is not None and obj.debug:
                    return "other"
                return name, dict(sub.params), obj.box_name if obj else None
    except click.exceptions.Exit:
        return "exit"  # --help
    except (click.UsageError, LagerError):
        return "usage"


def _python_meaning(p: dict[str, Any], box: str | None) -> Meaning:
    if any(p.get(k) != v for k, v in _PYTHON_DEFAULTS.items()):
        return "other"
    modes = [m for m in ("continue_id", "kill_id", "console_id", "list_runs") if p.get(m)
             not in (None, False)]
    if len(modes) != 1 or (p["signal_name"] and modes != ["kill_id"]):
        return "usage"
    mode = modes[0]
    if mode == "list_runs":
        return (protocol.SUB_LIST, None, box, p["as_json"])
    try:
        run_id = _id_arg(p[mode])
    except LagerError:
        return "usage"
    if mode == "kill_id":
        signal_name = p["signal_name"]
        return (protocol.SUB_KILL, run_id + (f" {signal_name}" if signal_name else ""), box,
                p["as_json"])
    return ({"continue_id": protocol.SUB_CONTINUE, "console_id": protocol.SUB_CONSOLE}[mode],
            run_id, box, p["as_json"])


def click_meaning(argv: list[str]) -> Meaning:
    """(subsystem, line or request, box, JSON output) as click's command would send and show
    it; else a word for what click does instead ("usage", "exit", "other")."""
    parsed = _click_params(argv)
    if isinstance(parsed, str):
        return parsed
    name, p, box = parsed
    if name == "python":
        return _python_meaning(p, box)
    if name == "nets" or p.get("net") is None:
        return (protocol.SUB_NETS, {"command": "nets"}, box, p["as_json"])
    kind = kinds.by_command(name)
    assert kind is not None
    options = {k: v for k, v in p.items() if k in kind.options}
    try:
        request = kind.request(p["net"], p["verb_name"], p["value"], options)
    except LagerError:
        return "usage"
    sent = json.loads(InstrumentRequest.ours(**request))  # the line the body sends
    del sent["v"]
    return (protocol.SUB_NETS, sent, box, p["as_json"])


def _shows_json(call: fastpath.Call, sample: Any) -> bool:
    """The call prints the box's answer as JSON (`--json`): it gives the sample back as it is.
    A human view of this sample fails or is some other text."""
    try:
        return json.loads("\n".join(call.render(json.dumps(sample)))) == sample
    except (KeyError, TypeError, ValueError, IndexError):
        return False


def fast_meaning(argv: list[str]) -> Meaning | None:
    """What try_fast sends, or None when it falls through to click."""
    call = fastpath.parse_command(list(argv))
    if call is None or not call.box:
        return None  # try_fast falls through without a box, too
    if call.subsystem == protocol.SUB_NETS:
        request = json.loads(call.line or "")
        assert request.pop("v") == protocol.PROTOCOL_VERSION
        sample: Any = [] if request == {"command": "nets"} else {"net": "n1", "x": 1}
        return (call.subsystem, request, call.box, _shows_json(call, sample))
    return (call.subsystem, call.line, call.box,
            call.subsystem == protocol.SUB_LIST and _shows_json(call, []))


@pytest.fixture(autouse=True)
def _config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGER_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("LAGER_BOX", raising=False)


# Forms the fast path must answer (not only agree on), and what they mean.
ANSWERED = [
    (["python", "--continue", "7f3a", "--box", "lab"], ("continue", "7f3a", "lab", False)),
    (["python", "--box=lab", "--continue= 7f3a\u2026e9 "],
     ("continue", "7f3a\u2026e9", "lab", False)),
    (["python", "--kill", "7f3a", "--signal", "TERM", "--box", "lab"],
     ("kill", "7f3a TERM", "lab", False)),
    (["python", "--kill=7f3a", "--box", "a", "--box", "lab"], ("kill", "7f3a", "lab", False)),
    (["python", "--list", "--json", "--box", "lab"], ("list", None, "lab", True)),
    (["python", "--box", "lab", "--list"], ("list", None, "lab", False)),
    (["python", "--console", "7f3a", "--box", "lab"], ("console", "7f3a", "lab", False)),
    (["nets", "--box", "lab", "--json"], ("nets", {"command": "nets"}, "lab", True)),
    (["supply", "--box", "lab"], ("nets", {"command": "nets"}, "lab", False)),
    (["supply", "supply2", "voltage", "-1", "--box", "lab"],
     ("nets", {"command": "supply", "net": "supply2", "action": "voltage", "value": -1.0},
      "lab", False)),
    (["eload", "load1", "cw", "2", "--json", "--box", "lab"],
     ("nets", {"command": "load", "net": "load1", "action": "cw", "value": 2.0}, "lab", True)),
    (["load", "load1", "--box", "lab"],
     ("nets", {"command": "load", "net": "load1", "action": "state"}, "lab", False)),
    (["battery", "b1", "mode", "Dynamic", "--box", "lab"],
     ("nets", {"command": "battery", "net": "b1", "action": "mode", "word": "dynamic"}, "lab",
      False)),
]

# Forms that are click's: a script run (with `--` and the script's own options), two modes,
# a kind's --options, group options, usage errors.
LEFT_TO_CLICK = [
    ["python", "test.py", "--box", "lab"],
    ["python", "test.py", "--", "--continue", "7f3a", "--box", "lab"],
    ["python", "--box", "lab", "test.py", "-x", "--list"],
    ["python", "--box", "lab", "--", "test.py", "--kill", "7f3a"],
    ["python", "--continue", "7f3a", "--kill", "7f3a", "--box", "lab"],
    ["python", "--continue", "7f3a", "--json", "--box", "lab"],
    ["python", "--list", "--signal", "TERM", "--box", "lab"],
    ["python", "--continue", "7f3a", "--box", "lab", "--detach"],
    ["python", "--continue", "7f3a"],  # no box anywhere
    ["--box", "lab", "python", "--continue", "7f3a"],
    ["--debug", "nets", "--box", "lab"],
    ["supply", "supply2", "voltage", "5", "--ovp", "6", "--box", "lab"],
    ["supply", "supply2", "sideways", "--box", "lab"],
    ["supply", "supply2", "voltage", "five", "--box", "lab"],
    ["load", "load1", "enable", "3", "--box", "lab"],
    ["load", "load1", "cc", "--", "--box", "lab"],
    ["nets", "extra", "--box", "lab"],
    ["py", "--continue", "7f3a", "--box", "lab"],
    [],
]


@pytest.mark.parametrize(("argv", "want"), ANSWERED)
def test_forms_the_fast_path_answers(argv: list[str], want: Meaning) -> None:
    assert fast_meaning(argv) == want
    assert click_meaning(argv) == want


@pytest.mark.parametrize("argv", LEFT_TO_CLICK)
def test_forms_the_fast_path_leaves_to_click(argv: list[str]) -> None:
    assert fast_meaning(argv) is None


def test_the_box_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAGER_BOX", "envbox")
    for argv, box in ((["python", "--continue", "7f3a"], "envbox"),
                      (["nets", "--box", "lab"], "lab"), (["nets", "--box="], "envbox")):
        fast = fast_meaning(argv)
        assert fast is not None and fast[2] == box and click_meaning(argv) == fast


_PYTHON_TOKENS = ["--continue", "--kill", "--list", "--console", "--json", "--signal", "TERM",
                  "7f3a", "--box", "lab", "--", "x.py", " "]  # --box= and more: ANSWERED


def test_every_short_python_argv_means_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `python` argv of up to four of these tokens: the four modes, their options, a
    script and `--` mixed in every order. With $LAGER_BOX set, so that forms without --box are
    answered too (without it they fall through: LEFT_TO_CLICK)."""
    monkeypatch.setenv("LAGER_BOX", "envbox")
    argvs = [["python", *rest] for size in range(5)
             for rest in itertools.product(_PYTHON_TOKENS, repeat=size)]
    answered, problems = disagreements(argvs, fast_meaning, click_meaning)
    assert answered > 500  # the table reaches every mode the fast path takes
    assert not problems, f"{len(problems)} of {answered} disagree, e.g. {problems[:5]}"


def _values(kind: Kind, verb_name: str) -> list[list[str]]:
    verb = kind.verb(verb_name)
    assert verb is not None
    if verb.takes == NUMBER:
        return [[], ["1.5"], ["-1"], ["-2.5e-1"], ["x"]]
    if verb.takes == WORD:
        return [[], [(verb.choices or ("word",))[0].upper()], ["bogus"], ["-1"]]
    return [[], ["3"]]


_OPTIONS = [[], ["--json"], ["--yes"], ["--box=lab"], ["--ovp", "2"], ["--"], ["-q"]]


def _kind_argvs(kind: Kind) -> list[list[str]]:
    argvs = []
    for command in (kind.name, *kind.aliases):
        positionals = [[], ["n1"], *(["n1", v.name, *value] for v in kind.verbs
                                     for value in _values(kind, v.name))]
        for positional, options in itertools.product(positionals, _OPTIONS):
            argvs.append([command, *positional, *options, "--box", "lab"])
            argvs.append([command, *options, *positional])
            if len(positional) > 1 and options:
                argvs.append([command, positional[0], *options, *positional[1:]])
    return argvs


@pytest.mark.parametrize("kind_name", ["supply", "battery", "adc", "load"])
def test_every_verb_of_every_kind_means_the_same(kind_name: str) -> None:
    kind = kinds.by_command(kind_name)
    assert kind is not None
    answered, problems = disagreements(_kind_argvs(kind), fast_meaning, click_meaning)
    assert answered > 3 * len(kind.verbs)
    assert not problems, f"{len(problems)} of {answered} disagree, e.g. {problems[:5]}"


def test_nets_means_the_same() -> None:
    tokens = ["--json", "--box", "lab", "--box=", "x", "--yes", "-1", "--"]
    argvs = [["nets", *rest] for size in range(4) for rest in itertools.product(tokens, repeat=size)]
    answered, problems = disagreements(argvs, fast_meaning, click_meaning)
    assert answered > 10
    assert not problems, f"{len(problems)} of {answered} disagree, e.g. {problems[:5]}"


def test_every_kind_and_alias_has_a_fast_form() -> None:
    names = [n for k in kinds.KINDS for n in (k.name, *k.aliases)]
    assert {"supply", "battery", "adc", "load", "eload"} <= set(names)
    for name in names:
        assert fast_meaning([name, "n1", "--box", "lab"]) is not None, name

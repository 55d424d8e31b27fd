"""`lager python SCRIPT [--box B] [ARGS...]`, the common form of a run, started without click.

Importing click and building the python command's thirty options took ~15 ms of a run's
~150 ms start before its first output byte (issue 13). This path takes only the argv forms
whose meaning is plain, and reads them as the click command does:

    lager python [--box B] SCRIPT [ARG | --box B]... [-- ARG...]

  - before SCRIPT only `--box B` / `--box=B`;
  - after it every token is the script's, except `--box` (lager's anywhere on the line, as in
    the spec's `lager python test.py --box mybox`) and `--`, which ends lager's options and
    is itself dropped;
  - the box: the last non-empty `--box`, else $LAGER_BOX.

Anything else goes to click, which reads it, runs it, or says precisely what is wrong: any
other option of the command (before or after SCRIPT; a single-dash cluster with one of its
short letters in it, as click splits `-vd` into `-v` for the script and `-d` for lager), a
group option, an empty box or SCRIPT, a set of boxes, $LAGER_DEBUG. The equivalence is
tests/unit/test_script_fastpath_vs_click.py: a table and generated argv, through both parsers.
"""
from __future__ import annotations

import os

# Not typing.TYPE_CHECKING: this path does without importing typing where it can.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .context import LagerContext

# The python command's option names (long, and the letters of its short ones with -h for
# help): click's, which the unit test checks. Any of them in the argv leaves it to click.
COMMAND_OPTIONS = frozenset({
    "--box", "--env", "--passenv", "--timeout", "--detach", "--stop-on-disconnect",
    "--no-stop-on-disconnect", "--download", "--reconnect-for", "--allow-overwrite",
    "--add-file", "--pause-on-failure", "--safe-state", "--wait", "--port", "--continue",
    "--console", "--reattach", "--kill", "--kill-all", "--any-owner", "--yes", "--signal",
    "--list", "--json", "--help"})
SHORT_LETTERS = frozenset("dph")


class ScriptCall:
    """One run as the common form gives it: the script, its arguments, the box asked for."""

    def __init__(self, script: str, args: list[str], box: str | None) -> None:
        self.script = script
        self.args = args
        self.box = box

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScriptCall) and \
            (self.script, self.args, self.box) == (other.script, other.args, other.box)

    def __repr__(self) -> str:
        return f"ScriptCall({self.script!r}, {self.args!r}, box={self.box!r})"


def _box_value(tokens: list[str], at: int) -> tuple[str, int] | None:
    """`--box B` or `--box=B` at tokens[at]: the value and the index after it; None when
    there is no plain value (missing, empty, or dash-led: click's to read or refuse)."""
    name, eq, value = tokens[at].partition("=")
    if name != "--box":
        return None
    at += 1
    if not eq:
        if at >= len(tokens):
            return None
        value, at = tokens[at], at + 1
    if not value or value.startswith("-"):
        return None
    return value, at


def _is_lagers(token: str) -> bool:
    """A dash-led token after SCRIPT that click would read (in part) as the command's own."""
    if token.startswith("--"):
        return token.partition("=")[0] in COMMAND_OPTIONS
    return any(letter in SHORT_LETTERS for letter in token[1:])


def parse(argv: list[str]) -> ScriptCall | None:
    """The run an argv asks for in the common form; None for every other argv."""
    if len(argv) < 2 or argv[0] != "python":
        return None
    tokens = argv[1:]
    box: str | None = None
    at = 0
    while at < len(tokens) and tokens[at].startswith("-"):  # before SCRIPT: --box only
        found = _box_value(tokens, at)
        if found is None:
            return None
        box, at = found
    if at >= len(tokens) or not tokens[at]:
        return None
    script, at = tokens[at], at + 1
    args: list[str] = []
    while at < len(tokens):
        token = tokens[at]
        if token == "--":
            args += tokens[at + 1:]
            break
        if len(token) > 1 and token.startswith("-") and _is_lagers(token):
            found = _box_value(tokens, at)
            if found is None:
                return None
            box, at = found
            continue
        args.append(token)
        at += 1
    return ScriptCall(script, args, box or os.environ.get("LAGER_BOX") or None)


def try_script(argv: list[str]) -> int | None:
    """The run's exit code when the argv is the common form; None to leave it to click."""
    if os.environ.get("LAGER_DEBUG"):
        return None  # --debug's tracebacks and the run's LAGER_DEBUG are click's
    call = parse(argv)
    if call is None:
        return None
    if call.box is not None:
        from .fleet.route import is_set_syntax

        if is_set_syntax(call.box):
            return None  # a set of boxes is the fleet's (client/entry.py routes it there)
    from .context import LagerContext
    from .failure import guarded

    obj = LagerContext(box_name=call.box)
    return guarded(lambda: _run(obj, call))


def _run(obj: LagerContext, call: ScriptCall) -> int:
    from .script_run import run

    return run(obj, call.script, call.args)

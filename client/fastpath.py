"""The short commands, answered without loading click or paramiko.

An engineer runs these from any terminal, often from a second one while a run is attached, and
their latency is a stated target (issue 13: at or under OpenSSH `ssh -s`, first call included).
Python starts in ~15 ms; click costs ~20 ms more and paramiko ~100 ms. So the exact forms below
are answered here: through the box's connection keeper when one is up (client/mux.py), else over
the quick SSH client (client/quick_channel.py), which leaves a keeper behind as the full path
does. Any other form, or anything the quick client does not handle, falls through to the click
CLI, which behaves the same, and says precisely what is wrong when something is.

    lager python --continue ID | --kill ID [--signal S] | --list [--json] | --console ID
    lager nets [--json]
    lager KIND [NET [VERB [VALUE]]] [--json] [--yes]      (KIND: supply, battery, adc, load...)

each with `--box B` anywhere (else $LAGER_BOX), as click reads them: an option's value is the
next token whatever it looks like, the last `--box` wins. Anything else (another option, `--`,
a short option, an option given twice where click would complain) goes to click.
"""
from __future__ import annotations

import json
import os
import sys

from . import EXIT_BROKEN_PIPE

# Not typing.TYPE_CHECKING: importing typing costs ~5 ms this path does without (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_FLAGS = {"python": {"--list", "--json"}, "nets": {"--json"}, "kind": {"--json", "--yes"}}
_VALUED = {"python": {"--box", "--continue", "--kill", "--signal", "--console"},
           "nets": {"--box"}, "kind": {"--box"}}


def _scan(tokens: list[str], flags: set[str], valued: set[str],
          is_value: Callable[[str], bool] | None = None
          ) -> tuple[dict[str, list[str]], list[str]] | None:
    """Options as click reads them (flags; NAME VALUE or NAME=VALUE) and the positional
    tokens; None for anything click might read otherwise. is_value: the dash-led tokens that
    are positional all the same (a kind's `-1`, as its click command reads it)."""
    opts: dict[str, list[str]] = {}
    positional: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or (is_value is not None and is_value(token)):
            positional.append(token)
            continue
        name, eq, value = token.partition("=")
        if name in flags and not eq:
            opts.setdefault(name, []).append("")
        elif name in valued:
            if not eq:
                if i >= len(tokens):
                    return None
                value, i = tokens[i], i + 1
            opts.setdefault(name, []).append(value)
        else:
            return None  # `-`, `--`, -x, an unknown option or a flag given a value
    return opts, positional


def _run_id(value: str) -> str | None:
    """The id as the click command takes it (its _id_arg); None where that is a usage error."""
    value = value.strip()
    return value if value and "\n" not in value else None


class Call:
    """One short request and how its answer is shown."""

    def __init__(self, subsystem: str, line: str | None, box: str | None,
                 render: Callable[[str], list[str]], resend_safe: bool = False) -> None:
        self.subsystem = subsystem
        self.line = line
        self.box = box
        self.render = render
        self.resend_safe = resend_safe
        self.console = False


def _box_of(opts: dict[str, list[str]]) -> str | None:
    # The command's own --box is eager and ignores an empty value (client/context.py).
    given = opts.get("--box", [""])[-1]
    return given or os.environ.get("LAGER_BOX")


def _echo(text: str) -> list[str]:
    return [text.rstrip("\n")]


def _python_call(tokens: list[str]) -> Call | None:
    from lager import protocol

    scanned = _scan(tokens, _FLAGS["python"], _VALUED["python"])
    if scanned is None or scanned[1]:
        return None  # a positional is a SCRIPT: the full CLI runs scripts
    opts, _ = scanned
    modes = [m for m in ("--continue", "--kill", "--list", "--console") if m in opts]
    if len(modes) != 1 or any(len(opts[m]) > 1 for m in modes):
        return None
    mode = modes[0]
    if ("--signal" in opts and mode != "--kill") or ("--json" in opts and mode != "--list"):
        return None
    box = _box_of(opts)
    if mode == "--list":
        from .run_views import format_runs

        as_json = "--json" in opts
        return Call(protocol.SUB_LIST, None, box, lambda out: [
            json.dumps(rows) if as_json else format_runs(rows)
            for rows in [json.loads(out)]], resend_safe=True)
    run_id = _run_id(opts[mode][0])
    if run_id is None:
        return None
    if mode == "--continue":
        return Call(protocol.SUB_CONTINUE, run_id, box, _echo)
    if mode == "--kill":
        signal_name = opts.get("--signal", [""])[-1]
        return Call(protocol.SUB_KILL, run_id + (f" {signal_name}" if signal_name else ""),
                    box, _echo)
    call = Call(protocol.SUB_CONSOLE, run_id, box, _echo, resend_safe=True)
    call.console = True
    return call


def _instrument_call(name: str, tokens: list[str]) -> Call | None:
    from lager import protocol

    if name == "nets":
        scanned = _scan(tokens, _FLAGS["nets"], _VALUED["nets"])
        if scanned is None or scanned[1]:
            return None
        from .instrument_views import nets_table

        as_json = "--json" in scanned[0]
        from lager.protocol.instrument import InstrumentRequest

        return Call(protocol.SUB_NETS, InstrumentRequest.ours(command="nets"), _box_of(scanned[0]),
                    lambda out: [json.dumps(json.loads(out))] if as_json
                    else nets_table(json.loads(out)), resend_safe=True)
    from lager.bench import kinds
    from lager.bench.kinds.spec import is_number

    kind = kinds.by_command(name)
    scanned = _scan(tokens, _FLAGS["kind"], _VALUED["kind"], is_number)
    if kind is None or scanned is None or len(scanned[1]) > 3:
        return None
    opts, positional = scanned
    as_json = "--json" in opts
    from . import instrument_views as views

    if not positional:
        if "--yes" in opts:
            return None  # click accepts it here too; nothing to gain
        from lager.protocol.instrument import InstrumentRequest

        return Call(protocol.SUB_NETS, InstrumentRequest.ours(command="nets"), _box_of(opts),
                    lambda out: [json.dumps(rows) if as_json else "\n".join(
                        views.kind_table(kind, rows))
                        for rows in [views.kind_rows(kind, json.loads(out))]],
                    resend_safe=True)
    net = positional[0]
    verb_name, value = [*positional[1:], None, None][:2]
    from lager.errors import UsageError

    try:
        request = kind.request(net, verb_name, value)  # as the click command builds it
    except UsageError:
        return None  # click says what is wrong with it
    verb = kind.verb(request["action"])
    if verb is None or (verb.confirm is not None and "--yes" not in opts
                        and sys.stdin.isatty()):
        return None  # the question is click's to ask
    reading = request.get("value") is None and request.get("word") is None
    from lager.protocol.instrument import InstrumentRequest

    return Call(protocol.SUB_NETS, InstrumentRequest.ours(**request), _box_of(opts), lambda out: [
        json.dumps(answer) if as_json else views.show_answer(kind, verb, reading, answer)
        for answer in [json.loads(out)]])


def parse_command(argv: list[str]) -> Call | None:
    """The call for an argv this path answers; None for everything else."""
    if not argv:
        return None
    if argv[0] == "python":
        return _python_call(argv[1:])
    if argv[0].startswith("-"):
        return None  # a group option (--debug, --box before the command): click's
    return _instrument_call(argv[0], argv[1:])


def try_fast(argv: list[str]) -> int | None:
    """The exit code when answered here; None to fall through to the click CLI."""
    if os.environ.get("LAGER_DEBUG"):
        return None  # --debug's tracebacks are click's
    call = parse_command(argv)
    if call is None or not call.box:
        return None
    from .fleet.route import is_set_syntax

    if is_set_syntax(call.box):
        return None  # a set is the fleet's (client/entry.py routes it there)
    from lager.errors import LagerError

    from . import keeper_retry
    from .config import Config

    config = Config()
    try:
        cached = getattr(config, "cached_box", None)
        box = cached(call.box) if cached is not None else config.boxes().get(call.box)
    except (LagerError, OSError):  # a damaged config gets the full CLI's error message
        return None
    if box is None:
        return None
    try:
        if call.console:
            return _console(config, box, call.line or "")
        settled = keeper_retry.keeper_or_direct(
            config, box, call.subsystem, call.line, None,
            lambda sent, patient: _direct(config, box, call, sent, patient))
    except LagerError as exc:  # after the request may have gone out: never sent twice
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    return None if settled is None else _show(call, *settled)


# The quick client (and its crypto) loads only here: the keeper's path needs none of it.

def _direct(config: Any, box: Any, call: Call, line: str | None, patient: bool
            ) -> tuple[str, str, int] | None:
    """The answer over the quick client; None when the full way must do it (nothing reached
    a subsystem, so nothing is sent twice). Patient (a keeper's retry, safe to repeat): a box
    that did not let us in is ConnectionFailed, which keeper_retry.patiently tries again."""
    from lager.errors import ConnectionFailed

    from . import quick_channel
    from .quick_ssh import Unreachable, Unsupported

    try:
        return quick_channel.exchange(config, box, call.subsystem, line,
                                      resend_safe=call.resend_safe or patient)
    except Unreachable as exc:
        if patient:
            raise ConnectionFailed(f"box {box.name}: {exc}") from None
        return None
    except Unsupported:
        return None


def _console(config: Any, box: Any, run_id: str) -> int | None:
    from . import mux

    if mux.enabled():  # through the keeper (or a run serving as one): no handshake
        from .keeper_stream import keeper_console

        code = keeper_console(mux.socket_path(config, box), run_id)
        if code is not None:
            return code
    from .console_client import quick_console
    from .quick_ssh import Unsupported

    try:
        return quick_console(config, box, run_id)
    except Unsupported:
        return None


def _show(call: Call, out: str, err: str, status: int) -> int | None:
    if status != 0:
        from lager.errors import refusal

        exc = refusal(call.subsystem, err, status)
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    try:
        lines = call.render(out)
    except (ValueError, KeyError, TypeError):
        return None if call.resend_safe else 1  # an answer we can't read: click says why
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # `lager nets | head -1`: quiet, as a tool that SIGPIPE ended (client/cli.py)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return 0

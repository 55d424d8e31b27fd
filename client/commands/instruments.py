"""`lager supply|battery|adc|load NET [VERB] [VALUE]` and `lager nets`: read and set instruments
from any terminal. Each kind's command is built from its declaration (lager/bench/kinds), so
its verbs, their values and options are the ones the box checks and runs."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from lager import protocol
from lager.bench import kinds
from lager.bench.kinds.spec import NUMBER, WORD, Kind, Verb, is_number
from lager.errors import LagerError
from lager.protocol.channel import InstrumentRequest

from .. import instrument_views as views
from ..context import LagerContext, box_option, pass_ctx
from .option_scan import option_arities, option_arity

json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


def _request(obj: LagerContext, **request: Any) -> Any:
    return obj.request_json(protocol.SUB_NETS, InstrumentRequest.ours(**request))


def _confirm(verb: Verb, yes: bool) -> None:
    """The real lager asks before enabling an output; here only on a terminal, so scripts and
    CI (no terminal) never hang on a prompt, and --yes skips it."""
    if verb.confirm is None or yes or not sys.stdin.isatty():
        return
    if not click.confirm(verb.confirm, default=False):
        raise LagerError(f"not done: {verb.name} was not confirmed (--yes skips the question)")


def _list(obj: LagerContext, kind: Kind, as_json: bool) -> None:
    rows = views.kind_rows(kind, _request(obj, command="nets"))
    for line in [json.dumps(rows)] if as_json else views.kind_table(kind, rows):
        click.echo(line)


class KindCommand(click.Command):
    """`lager supply NET voltage -1`: a negative VALUE is a value. Click would read `-1` as an
    unknown short option (a 4-line usage error); here numbers go through as arguments and the
    verb's own check (or the box's range) refuses them in one line. Any other unknown option is
    still click's usage error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = option_arities(self, ctx)
        i = 0
        while i < len(args):
            token = args[i]
            i += 1
            if token == "--":
                break
            if not token.startswith("-") or token == "-" or is_number(token):
                continue
            i += option_arity(token, takes_value, ctx)
        return super().parse_args(ctx, args)


def kind_command(kind: Kind) -> click.Command:
    verbs = [v.name for v in kind.verbs]

    def command(obj: LagerContext, net: str | None, verb_name: str | None, value: str | None,
                as_json: bool, yes: bool, **options: float | None) -> None:
        if net is None:
            _list(obj, kind, as_json)
            return
        request = kind.request(net, verb_name, value, options)
        verb = kind.verb(request["action"])
        assert verb is not None  # kind.request named it
        _confirm(verb, yes)
        answer = _request(obj, **request)
        reading = request.get("value") is None and request.get("word") is None and \
            "options" not in request
        click.echo(json.dumps(answer) if as_json else views.show_answer(kind, verb, reading,
                                                                   answer))

    lines = [f"{kind.summary}. Without NET, list the box's {kind.net_type} nets.", "",
             "\b", f"VERB (default {kind.default_verb}); a verb with its value omitted reads:"]
    for v in kind.verbs:
        arg = f" [{v.unit or 'VALUE'}]" if v.takes == NUMBER else \
            f" [{'|'.join(v.choices) or 'NAME'}]" if v.takes == WORD else ""
        lines.append(f"  {v.name}{arg}: {v.help}")
    params: list[click.Parameter] = [
        click.Argument(["net"], required=False),
        click.Argument(["verb_name"], required=False, metavar="[VERB]",
                       type=click.Choice(verbs)),
        click.Argument(["value"], required=False),
        *(click.Option([f"--{name}"], type=float, help=text)
          for name, text in kind.options.items()),
        click.Option(["--yes"], is_flag=True, help="do not ask before enabling an output"),
    ]
    cmd = KindCommand(kind.name, callback=click.pass_obj(command), params=params,
                      help="\n".join(lines), short_help=kind.summary,
                      context_settings={"ignore_unknown_options": True})
    return json_option(box_option(cmd))  # type: ignore[no-any-return]


@click.command()
@box_option
@json_option
@pass_ctx
def nets(obj: LagerContext, as_json: bool) -> None:
    """List the bench's nets, their instruments and who holds them now."""
    rows = _request(obj, command="nets")
    for line in [json.dumps(rows)] if as_json else views.nets_table(rows):
        click.echo(line)


def command_for(name: str) -> click.Command | None:
    """The click command for a kind's name or alias (`load`, `eload`), built on demand."""
    if name == "nets":
        return nets
    kind = kinds.by_command(name)
    return kind_command(kind) if kind is not None else None


def command_names() -> list[str]:
    return [*(k.name for k in kinds.KINDS), *(a for k in kinds.KINDS for a in k.aliases), "nets"]

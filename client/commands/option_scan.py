"""Reading a command's own options out of argv before click does, for the two commands whose
arguments click would misread: `lager python` (the script's options are not lager's) and the
instrument kinds (a negative VALUE is not an option)."""
from __future__ import annotations

import click


def option_arities(cmd: click.Command, ctx: click.Context) -> dict[str, bool]:
    """Each option name of `cmd` (short and long, secondary ones too): does it take a value?"""
    takes_value: dict[str, bool] = {}
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (param.is_flag or param.count)
    return takes_value


def option_arity(token: str, takes_value: dict[str, bool], ctx: click.Context) -> int:
    """How many more tokens an option of the command takes; a usage error for any other."""
    if token.startswith("--"):
        name, eq, _ = token.partition("=")
        if name in takes_value:
            return 1 if takes_value[name] and not eq else 0
        raise click.NoSuchOption(name, ctx=ctx)
    for j, char in enumerate(token[1:], start=1):  # a cluster of short options: -dp 8080
        name = "-" + char
        if name not in takes_value:
            raise click.NoSuchOption(name, ctx=ctx)
        if takes_value[name]:
            return 0 if j + 1 < len(token) else 1
    return 0

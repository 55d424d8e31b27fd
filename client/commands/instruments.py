"""`lager supply|battery|adc|nets`: read and set instruments from any terminal."""
from __future__ import annotations

import json
from typing import Any

import click

from lager import protocol
from lager.errors import UsageError

from ..context import LagerContext, box_option, pass_ctx

json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object")


def _request(obj: LagerContext, **request: Any) -> Any:
    return obj.request_json(protocol.SUB_NETS, json.dumps(request))


def _number(action: str, value: str | None) -> float:
    if value is None:
        raise UsageError(f"{action} needs a value")
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"{action} value {value!r} is not a number") from None


def format_supply(s: dict[str, Any]) -> str:
    return (f"{s['net']}: {'on ' if s['enabled'] else 'off'}  set {s['set_voltage']:.3f} V "
            f"/ {s['set_current']:.3f} A  measured {s['voltage']:.3f} V {s['current']:.4f} A")


def format_battery(s: dict[str, Any]) -> str:
    return (f"{s['net']}: {'on ' if s['enabled'] else 'off'}  SOC {s['soc']:.1f} %  "
            f"{s['voltage']:.3f} V {s['current']:.4f} A  (open circuit "
            f"{s['open_circuit_voltage']:.3f} V)")


def _instrument_command(kind: str, actions: tuple[str, ...], valued: set[str],
                        formatter: Any) -> click.Command:
    @click.command(kind, help=f"{kind.capitalize()} net: {' | '.join(actions)} "
                   f"(with a value for {', '.join(sorted(valued))}).")
    @click.argument("net")
    @click.argument("action", default="state", type=click.Choice(actions))
    @click.argument("value", required=False)
    @box_option
    @json_option
    @pass_ctx
    def command(obj: LagerContext, net: str, action: str, value: str | None,
                as_json: bool) -> None:
        request: dict[str, Any] = {"command": kind, "net": net, "action": action}
        if action in valued:
            request["value"] = _number(action, value)
        elif value is not None:
            raise UsageError(f"{action} takes no value")
        state = _request(obj, **request)
        click.echo(json.dumps(state) if as_json else formatter(state))

    return command


supply = _instrument_command("supply", ("state", "voltage", "current", "enable", "disable"),
                             {"voltage", "current"}, format_supply)
battery = _instrument_command("battery", ("state", "soc", "enable", "disable"), {"soc"},
                              format_battery)


@click.command()
@click.argument("net")
@box_option
@json_option
@pass_ctx
def adc(obj: LagerContext, net: str, as_json: bool) -> None:
    """Read an ADC net (volts)."""
    reading = _request(obj, command="adc", net=net, action="read")
    click.echo(json.dumps(reading) if as_json else f"{reading['net']}: {reading['voltage']:.4f} V")


def _holder(row: dict[str, Any]) -> str:
    held = row.get("held_by")
    if not held:
        return "free"
    if held.get("run_id"):
        paused = f', paused "{held["paused"]}"' if held.get("paused") else ""
        return f"held by run {protocol.short_id(held['run_id'])} ({held.get('script')}{paused})"
    return f"held by {held.get('script')} (pid {held.get('pid')})"


@click.command()
@box_option
@json_option
@pass_ctx
def nets(obj: LagerContext, as_json: bool) -> None:
    """List the bench's nets, their instruments and who holds them now."""
    rows = _request(obj, command="nets")
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        channel = f" ch{row['channel']}" if row.get("channel") is not None else ""
        click.echo(f"{row['name']:<10} {row['kind']:<12} {row['instrument'] + channel:<16} "
                   f"{_holder(row)}")


COMMANDS: list[click.Command] = [supply, battery, adc, nets]

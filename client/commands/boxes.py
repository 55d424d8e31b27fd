"""`lager boxes add|list|remove`: the boxes this laptop knows and their pinned host keys."""
from __future__ import annotations

import json

import click

from lager.errors import AuthFailed, HostKeyChanged

from ..config import DEFAULT_CONNECT_TIMEOUT, ENV_CONNECT_TIMEOUT, Box, parse_seconds
from ..context import LagerContext, pass_ctx


@click.group()
def boxes() -> None:
    """Known boxes and their pinned host keys."""


@boxes.command("add")
@click.argument("name")
@click.option("--host", required=True)
@click.option("--port", type=click.IntRange(1, 65535), default=2222, show_default=True)
@click.option("--user", default="lager", show_default=True,
              help="SSH user name (the box decides by key; the name goes in its audit log)")
@click.option("--identity", type=click.Path(dir_okay=False), default=None,
              help="private key to use (default: lager's own, created on first use)")
@click.option("--repin", is_flag=True, help="accept a changed host key for an existing box")
@click.option("--connect-timeout", "connect_timeout", metavar="SECONDS", default=None,
              help=f"give up on a box that does not answer (default "
                   f"{DEFAULT_CONNECT_TIMEOUT:g}s; ${ENV_CONNECT_TIMEOUT} overrides it)")
@pass_ctx
def add(obj: LagerContext, name: str, host: str, port: int, user: str, identity: str | None,
        repin: bool, connect_timeout: str | None) -> None:
    """Connect once to NAME, pin its host key, and check that our key is authorized."""
    from ..ssh import Deadline, authenticate, fingerprint, start_transport

    config = obj.config
    timeout = parse_seconds(connect_timeout, "--connect-timeout") if connect_timeout else None
    box = Box(name=name, host=host, port=port, user=user, identity=identity,
              connect_timeout=timeout)
    if identity is None:
        _, _, created = config.ensure_default_key()
        if created:
            click.echo(f"created lager's key {config.default_key_path}")
    deadline = Deadline(box)
    transport = start_transport(box, deadline)
    try:
        key = transport.get_remote_server_key()
        seen = fingerprint(key.asbytes())
        pinned = config.pinned_line(box)
        if pinned and pinned.split()[1:3] != [key.get_name(), key.get_base64()] and not repin:
            raise HostKeyChanged(
                f"HOST KEY CHANGED for {box.known_hosts_name}: it now shows {seen}. "
                "If the box was reinstalled on purpose, run this again with --repin")
        config.add_box(box)
        config.pin(box, key.get_name(), key.get_base64())
        click.echo(f"pinned host key of {name} ({host}:{port}): {seen}")
        try:
            authenticate(config, box, transport, deadline)
        except AuthFailed:
            pub = (config.identity_path(box).with_name(
                config.identity_path(box).name + ".pub"))
            line = pub.read_text().strip() if pub.exists() else "<your public key>"
            click.echo(f"this key is not a box key yet; on the box run:\n"
                       f"  lager-box authorize '{line}'")
            return
        click.echo(f"authenticated as {user}: box {name} is ready")
    finally:
        transport.close()


@boxes.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def list_(obj: LagerContext, as_json: bool) -> None:
    """Show the known boxes."""
    known = obj.config.boxes()
    if as_json:
        click.echo(json.dumps([vars(b) for b in known.values()]))
        return
    if not known:
        click.echo("no boxes yet: lager boxes add NAME --host HOST")
    for box in known.values():
        click.echo(f"{box.name:<16} {box.user}@{box.host}:{box.port}"
                   + (f"  key {box.identity}" if box.identity else "")
                   + (f"  connect timeout {box.connect_timeout:g}s"
                      if box.connect_timeout else ""))


@boxes.command("remove")
@click.argument("name")
@pass_ctx
def remove(obj: LagerContext, name: str) -> None:
    """Forget NAME and its pinned host key."""
    obj.config.remove_box(name)
    click.echo(f"removed {name}")

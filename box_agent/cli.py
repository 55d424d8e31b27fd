"""`lager-box serve` and `lager-box authorize` (contract in DESIGN.md)."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click

from lager import protocol
from lager.errors import LagerError

from .state import DEFAULT_STATE_DIR, StateDir

DEFAULT_LISTEN = "0.0.0.0:2222"


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter("use HOST:PORT, for example 127.0.0.1:0")
    return host.strip("[]") or "0.0.0.0", int(port)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The lager box agent."""


@main.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True,
              help="HOST:PORT; port 0 picks one")
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True)
@click.option("--bench", "bench_file", type=click.Path(path_type=Path, exists=True,
              dir_okay=False), help="a real bench config; without it the simulated bench runs")
@click.option("--name", default=socket.gethostname(), show_default=True,
              help="the box name banners print when a client does not say")
@click.option("-v", "--verbose", is_flag=True)
def serve(listen: str, state_dir: Path, bench_file: Path | None, name: str,
          verbose: bool) -> None:
    """Start the agent."""
    host, port = _parse_listen(listen)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(_serve(StateDir(state_dir), host, port, bench_file, name))
    except LagerError as exc:
        raise click.ClickException(str(exc)) from None


async def _serve(state: StateDir, host: str, port: int, bench_file: Path | None,
                 name: str) -> None:
    from .bench_host import BenchHost
    from .runs import Supervisor
    from .server import Agent

    state.prepare()
    bench = await BenchHost.start(bench_file, state.root, state.claims_dir)
    base_env = dict(os.environ)
    base_env.update(bench.script_env())
    base_env[protocol.ENV_BOX_NAME] = name
    supervisor = Supervisor(state.runs_dir, base_env)
    adopted = supervisor.adopt()
    if adopted:
        logging.getLogger("lager-box").warning("took back %d run(s) from an earlier agent",
                                               adopted)
    agent = Agent(state, supervisor)
    try:
        bound_host, bound_port = await agent.listen(host, port)
    except OSError as exc:
        await bench.stop()
        raise LagerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    fingerprint = state.host_key().get_fingerprint("sha256")
    print(f"lager-box listening on {bound_host}:{bound_port} (host key {fingerprint})",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    agent.close()
    await supervisor.shutdown()
    await bench.stop()


@main.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True)
@click.argument("pubkey")
def authorize(state_dir: Path, pubkey: str) -> None:
    """Add PUBKEY (a .pub file or the key line) to the box keys."""
    try:
        key = StateDir(state_dir).authorize(pubkey)
    except (LagerError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"authorized {key.fingerprint} {key.comment}".rstrip())


if __name__ == "__main__":
    sys.exit(main())

"""`lager-box serve` and `lager-box authorize` (contract in DESIGN.md)."""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from lager import heap, protocol
from lager.errors import LagerError, usage_line

from . import sdnotify
from .preauth import Limits, parse_max_startups
from .rekey_limit import RekeyLimit, parse_rekey_limit
from .run_limits import RunLimits, parse_count, parse_duration, parse_size
from .state import DEFAULT_STATE_DIR, StateDir

DEFAULT_LISTEN = f"0.0.0.0:{protocol.DEFAULT_PORT}"
_T = TypeVar("_T")
# Buffers under 4 MiB from the heap, and up to 32 MiB of it kept free after a burst: what the
# agent, which lives long and serves many channels, may hold for the next one.
AGENT_MMAP_THRESHOLD, AGENT_TRIM_THRESHOLD = 4 * 1024 * 1024, 32 * 1024 * 1024


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter("use HOST:PORT, for example 127.0.0.1:0")
    return host.strip("[]") or "0.0.0.0", int(port)


class _OneLineUsage(click.Group):
    """Click's usage errors (an unknown option, a bad value) as one line, exit 2, as the
    lager CLI prints them; everything else as click's standalone mode does."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as exc:
            click.echo(usage_line(exc.format_message(),
                                  exc.ctx.command_path if exc.ctx else None), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.exit(130)


@click.group(cls=_OneLineUsage, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--run-as", metavar="USER",
              help="run scripts (and their consoles) as this unprivileged user")
@click.option("--run-groups", metavar="G1,G2", default="",
              help="extra groups for scripts run with --run-as (instrument access: dialout...)")
@click.option("--login-grace", type=click.FloatRange(min=1), default=Limits.login_grace,
              show_default=True, help="seconds a connection has to log in (LoginGraceTime)")
@click.option("--max-startups", default="10:30:100", show_default=True,
              metavar="START:RATE:FULL",
              help="cap on unauthenticated connections (sshd's MaxStartups): from START on, "
                   "a new one may displace the oldest (RATE%, rising), from FULL it always does")
@click.option("--per-source-max-startups", type=click.IntRange(min=1),
              default=Limits.per_source, show_default=True,
              help="unauthenticated connections one address (IPv6: one /64) may hold")
@click.option("--max-auth-tries", type=click.IntRange(min=1), default=Limits.max_auth_tries,
              show_default=True, help="failed logins one connection gets (MaxAuthTries)")
@click.option("--host-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="an OpenSSH host certificate for the host key (ssh-keygen -s CA -h "
                   "STATE_DIR/ssh_host_ed25519_key.pub): clients with the CA in an "
                   "@cert-authority known_hosts line trust the box without pinning it")
@click.option("--replace", is_flag=True,
              help="take over from the agent running on this state dir with no gap: its "
                   "listening socket, its runs and the bench (an upgrade)")
@click.option("--reservations", type=click.Choice(["on", "off"]), default="on",
              show_default=True,
              help="shared boxes: a run or a lock reserves the box for its key's identity; "
                   "off lets every key change the bench and start runs at any time")
@click.option("--run-log-limit", metavar="SIZE", default="64M", show_default=True,
              help="output kept per run on disk, newest bytes (64M, 1G, bytes); a run keeps "
                   "the limit it started with")
@click.option("--keep-finished", metavar="DURATION", default="24h", show_default=True,
              help="how long a finished run stays listable and reattachable (24h, 90m, 3600s)")
@click.option("--keep-finished-runs", metavar="N", default="100", show_default=True,
              help="at most this many finished runs are kept (the oldest go first)")
@click.option("--rekey-limit", metavar="'SIZE [TIME]'", default="1G 1h", show_default=True,
              help="new session keys after the box has sent this much on a connection, or "
                   "after this long (sshd's RekeyLimit; one argument: quote the two)")
@click.option("--ready-fd", type=int, hidden=True,
              help="(for `lager-box reload`) say took/ready on this inherited pipe")
@click.option("-v", "--verbose", count=True,
              help="-v logs at INFO; -vv at DEBUG, which names each channel's subsystem")
def serve(listen: str, state_dir: Path, bench_file: Path | None, name: str,
          run_as: str | None, run_groups: str, login_grace: float, max_startups: str,
          per_source_max_startups: int, max_auth_tries: int, host_cert: Path | None,
          replace: bool, reservations: str, run_log_limit: str, keep_finished: str,
          keep_finished_runs: str, rekey_limit: str, ready_fd: int | None,
          verbose: int) -> None:
    """Start the agent."""
    host, port = _parse_listen(listen)
    run_limits = _run_limits(run_log_limit, keep_finished, keep_finished_runs)
    rekey = _parsed_or_exit("--rekey-limit", parse_rekey_limit, rekey_limit)
    try:
        start, rate, full = parse_max_startups(max_startups)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-startups") from None
    limits = Limits(start=start, rate=rate, full=full, per_source=per_source_max_startups,
                    max_auth_tries=max_auth_tries, login_grace=login_grace)
    groups = [g.strip() for g in run_groups.split(",") if g.strip()]
    if groups and not run_as:
        raise click.BadParameter("needs --run-as", param_hint="--run-groups")
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else
                        logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # asyncssh logs several lines per connection and channel at INFO: a flood of connections
    # would bury everything else. The agent logs what matters itself (auth, refusals, drops).
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    _raise_fd_limit()
    # Run streams pass 256 KiB packets and 1 MiB records through the heap: keep it (lager/heap.py).
    heap.keep_freed_memory(AGENT_MMAP_THRESHOLD, AGENT_TRIM_THRESHOLD)
    try:
        asyncio.run(_serve(StateDir(state_dir), Serving(
            host, port, bench_file, name, limits, run_as, groups, host_cert, replace,
            reservations == "on", run_limits, rekey, ready_fd)))
    except LagerError as exc:
        raise click.ClickException(str(exc)) from None


def _run_limits(log_limit: str, keep: str, keep_runs: str) -> RunLimits:
    return RunLimits(_parsed_or_exit("--run-log-limit", parse_size, log_limit),
                     _parsed_or_exit("--keep-finished", parse_duration, keep),
                     _parsed_or_exit("--keep-finished-runs", parse_count, keep_runs))


def _parsed_or_exit(option: str, parse: Callable[[str], _T], text: str) -> _T:
    """The option's value, or one line and exit 2 (a unit file's typo should read as one)."""
    try:
        return parse(text)
    except ValueError as exc:
        click.echo(f"lager-box serve: {option}: {exc}", err=True)
        sys.exit(2)


def _raise_fd_limit() -> None:
    """Each connection, run and pause holds descriptors; the usual soft limit of 1024 ran out
    near 200 paused runs. The hard limit is ours to take."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still stops at the kernel's nr_open (1 << 20 by default).
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger("lager-box").warning(
                "cannot raise the open-file limit from %d to %d: %s", soft, target, exc)


@dataclass(frozen=True)
class Serving:
    """What `lager-box serve` was asked for."""

    host: str
    port: int
    bench_file: Path | None
    name: str
    limits: Limits
    run_as: str | None
    run_groups: list[str]
    host_cert: Path | None
    replace: bool
    reservations: bool = True
    run_limits: RunLimits = field(default_factory=RunLimits)
    rekey: RekeyLimit = field(default_factory=RekeyLimit)
    ready_fd: int | None = None  # `lager-box reload` waits on it


async def _serve(state: StateDir, how: Serving) -> None:
    from .bench_host import BenchHost
    from .handover import HandoverPoint, take_over
    from .reload import TOOK, ReadyPipe
    from .reservations import Reservations
    from .runs import Supervisor
    from .server import Agent, host_keys

    state.prepare()
    host_keys(state, how.host_cert)  # a certificate that does not fit says so at once
    # Before adopting anything: the running agent lets go of its runs when it hands over.
    handed = take_over(state.root) if how.replace else None
    ready_pipe = ReadyPipe(how.ready_fd)
    ready_pipe.say(TOOK)
    bench = await BenchHost.start(how.bench_file, state.root, state.claims_dir)
    # Scripts get the agent's environment minus what is systemd's word to the agent alone.
    base_env = {k: v for k, v in os.environ.items() if k not in sdnotify.AGENT_ONLY_ENV}
    base_env.update(bench.script_env())
    base_env[protocol.ENV_BOX_NAME] = how.name
    supervisor = Supervisor(state.runs_dir, base_env, run_as=how.run_as,
                            run_groups=how.run_groups, limits=how.run_limits)
    adopted = supervisor.adopt()
    if adopted:
        logging.getLogger("lager-box").warning("took back %d run(s) from an earlier agent",
                                               adopted)
    book = Reservations(state.root, supervisor, enabled=how.reservations)
    book.expect_adopted()  # runs still being reached hold the box from their records
    supervisor.on_end = book.run_ended
    agent = Agent(state, supervisor, how.limits, how.host_cert, book, how.rekey)
    try:
        bound_host, bound_port = await agent.listen(how.host, how.port, handed)
    except OSError as exc:
        await bench.stop()
        raise LagerError(f"cannot listen on {how.host}:{how.port}: "
                         f"{exc.strerror or exc}") from None
    fingerprint = state.host_key().get_fingerprint("sha256")
    print(f"lager-box listening on {bound_host}:{bound_port} (host key {fingerprint})",
          flush=True)
    sdnotify.ready(f"listening on {bound_host}:{bound_port}")  # systemd's Type=notify
    ready_pipe.ready()  # after READY=1: `systemctl reload` returns once systemd knows
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def handed_over() -> None:
        supervisor.closing = True  # the successor owns the runs now
        stop.set()

    point = HandoverPoint(state.root, agent.listening, handed_over,
                          before_handing=supervisor.hold_for_viewers)
    await stop.wait()
    book.keep_places()  # the waiters it drops now come back to the next agent's queue
    supervisor.hold_for_viewers()  # while the clients are still attached (SIGTERM)
    point.close()
    agent.close()
    await agent.wait_closed()
    await supervisor.shutdown()
    await bench.stop()


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True, help="the running agent's state dir")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="seconds the new agent has to take over")
@click.argument("serve_command", nargs=-1, type=click.UNPROCESSED, required=True)
def reload(state_dir: Path, timeout: float, serve_command: tuple[str, ...]) -> None:
    """Upgrade with no gap, and wait for it: start SERVE_COMMAND (`lager-box serve ...`) with
    --replace, return once it serves; if it dies or does not take over within --timeout, exit
    1 and the running agent goes on (systemd's ExecReload:
    `lager-box reload --state-dir DIR -- /path/to/lager-box serve ...`)."""
    from .reload import ReloadFailed, reload_agent

    try:
        pid = reload_agent(state_dir, serve_command, timeout)
    except ReloadFailed as exc:
        click.echo(f"lager-box reload: {exc}", err=True)
        sys.exit(1)
    click.echo(f"lager-box reload: the new agent (pid {pid}) serves")


@main.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True)
@click.option("--ca", "ca", is_flag=True,
              help="PUBKEY is an SSH CA: let in user certificates it signs (one cert-authority "
                   "line instead of a key per user)")
@click.option("--principals", metavar="A,B",
              help="with --ca: only certificates for one of these principals (without it, a "
                   "certificate must name the SSH user name, as sshd has it)")
@click.argument("pubkey")
def authorize(state_dir: Path, ca: bool, principals: str | None, pubkey: str) -> None:
    """Add PUBKEY (a .pub file or the key line) to the box keys, or with --ca, a CA whose
    user certificates log in (`lager-box authorize --ca CA.pub [--principals a,b]`)."""
    if principals is not None and not ca:
        raise click.BadParameter("only with --ca", param_hint="--principals")
    wanted = [p.strip() for p in (principals or "").split(",") if p.strip()]
    try:
        state = StateDir(state_dir)
        key = state.authorize_ca(pubkey, wanted) if ca else state.authorize(pubkey)
    except (LagerError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    what = "certificates from CA" if ca else ""
    limit = f" for principals {', '.join(wanted)}" if wanted else ""
    click.echo(f"authorized {what} {key.fingerprint} {key.comment}".replace("  ", " ").rstrip()
               + limit)


if __name__ == "__main__":
    sys.exit(main())

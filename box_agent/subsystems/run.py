"""`run` starts a script and streams it; `attach` (--reattach) joins a run already going.

Channel protocol of `run` (lager.protocol.channel): one RunHeader line, then the bytes of each
file it lists, in order. After that the client may send control lines: Enter (resume a pause,
counted only while paused), Signal (INT, TERM) and Stop.
Script stdout is the channel's stdout, script stderr its stderr, the exit code its exit status;
a client that asks for events gets both as framed records instead (lager.protocol.events).
"""
from __future__ import annotations

import asyncio
import errno
import shutil
import signal
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from lager import protocol
from lager.errors import LagerError
from lager.protocol import version
from lager.protocol.channel import (
    Enter,
    FileEntry,
    RunHeader,
    RunStarted,
    Signal,
    Stop,
    decode_control,
    parse_attach,
)
from lager.protocol.codec import load_object
from lager.protocol.events import Hello

from ..reservations import MAX_LABEL, RUN, clean_text
from ..runs import Run, RunSpec
from .channel_viewer import ChannelViewer
from .common import Context, watch

MAX_HEADER = 1024 * 1024
_SIGNALS_FROM_CLIENT = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}


MAX_FILES = 20_000
_NAME_MAX = 255


def _no_nul(value: str, what: str) -> str:
    """Text a file name, argument or env value can hold: no NUL, and no lone surrogate (JSON's
    "\\ud800" decodes to one, which no file system or exec takes)."""
    if "\x00" in value:
        raise LagerError(f"malformed run request: {what} contains a NUL byte")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise LagerError(f"malformed run request: {what} is not valid Unicode") from None
    return value


def _safe_relpath(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise LagerError("upload has a file with no name")
    pure = PurePosixPath(_no_nul(path, "a file name"))
    if pure.is_absolute() or ".." in pure.parts:
        raise LagerError(f"upload path {path[:100]!r} must be relative, without '..'")
    if not pure.parts:
        raise LagerError(f"upload path {path[:100]!r} names no file")
    if any(len(part.encode()) > _NAME_MAX for part in pure.parts):
        raise LagerError(f"upload path {path[:100]!r} has a name longer than {_NAME_MAX} bytes")
    return str(pure)


def _parse_files(entries: list[FileEntry]) -> list[tuple[str, int, int]]:
    if len(entries) > MAX_FILES:
        raise LagerError(f"upload has more than {MAX_FILES} files")
    files = []
    for entry in entries:
        if not 0 <= entry.size <= protocol.MAX_UPLOAD:
            raise LagerError("malformed run request: bad file entry")
        if not 0 <= entry.mode <= 0o7777:
            raise LagerError("malformed run request: a file mode must be an integer permission")
        files.append((_safe_relpath(entry.path), entry.size, entry.mode & 0o755))
    # Two entries for one path would silently lose one file; a file that is also another's
    # directory cannot be stored at all.
    paths = [path for path, _, _ in files]
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise LagerError(f"upload lists {path[:100]!r} twice")
        seen.add(path)
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) in seen:
                raise LagerError(f"upload has {str(parent)[:100]!r} both as a file and as the "
                                 f"directory of {path[:100]!r}")
    return files


def _client_ref(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isalnum():
        raise LagerError("malformed run request: client_ref must be up to 64 letters or digits")
    return value


def _fleet(value: str | None) -> str:
    if value is None:
        return ""
    if not protocol.valid_fleet_id(value):
        raise LagerError("malformed run request: fleet must be a fleet id such as f-3c9a")
    return value


def read_header(raw: bytes) -> RunHeader:
    """The run request, typed; a client too old for this box is told so in one line."""
    body = load_object(raw, RunHeader.WHAT)
    refusal = version.client_refusal(version.version_of(body))
    if refusal:
        raise LagerError(refusal)
    return RunHeader.from_dict(body)


def parse_header(head: RunHeader) -> tuple[RunSpec, list[tuple[str, int, int]], list[str]]:
    """Validate the run request; returns the spec, the files to receive, and warnings."""
    files = _parse_files(head.files)
    if sum(size for _, size, _ in files) > protocol.MAX_UPLOAD:
        raise LagerError(f"upload larger than {protocol.MAX_UPLOAD // 2**20} MiB")
    main = _safe_relpath(head.main)
    if main not in {path for path, _, _ in files}:
        raise LagerError(f"malformed run request: {main[:100]!r} is not among the uploaded files")
    args, env = head.args, head.env
    for arg in args:
        _no_nul(arg, "an argument")
    for name, value in env.items():
        if not protocol.valid_env_name(name):
            raise LagerError(f"invalid --env name {name[:100]!r}")
        _no_nul(value, f"--env {name}")
    timeout = head.timeout
    if timeout < 0:
        raise LagerError("--timeout must be a number of seconds, 0 or more")
    warnings = []
    if timeout > protocol.MAX_RUN_TIMEOUT:
        warnings.append(f"warning: --timeout {timeout:g}s is capped at "
                        f"{protocol.MAX_RUN_TIMEOUT:g}s on this box")
        timeout = protocol.MAX_RUN_TIMEOUT
    display, box = head.script, head.box
    display = _no_nul(display or main, "the script name")
    if box:
        env = {protocol.ENV_BOX_NAME: _no_nul(box, "the box name"), **env}
    safe = head.safe_state
    if safe not in protocol.SAFE_STATE_CHOICES:
        raise LagerError(f"--safe-state must be one of {', '.join(protocol.SAFE_STATE_CHOICES)}")
    pause_on_failure = head.pause_on_failure
    if pause_on_failure:  # the flag wins over an --env of the same switch
        env = {**env, protocol.ENV_PAUSE_ON_FAILURE: "1"}
    if protocol.switched_on(env.get(protocol.ENV_PAUSE_ON_FAILURE)):
        # A script that runs pytest.main() before it imports lager still gets the plugin.
        env[protocol.PYTEST_PLUGINS_ENV] = protocol.with_pytest_plugin(
            env.get(protocol.PYTEST_PLUGINS_ENV))
    spec = RunSpec(display_name=display, main=main, args=args, env=env,
                   label=clean_text(head.label, MAX_LABEL, "label"),
                   timeout=timeout, detach=head.detach,
                   stop_on_disconnect=head.stop_on_disconnect,
                   client_ref=_client_ref(head.client_ref), safe_state=safe,
                   pause_on_failure=pause_on_failure, fleet=_fleet(head.fleet))
    return spec, files, warnings


def _storage_error(exc: OSError) -> LagerError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LagerError(f"the box has no room for the upload: {exc.strerror}")
    return LagerError(f"the box cannot store the upload: {exc.strerror or exc}")


async def _receive_files(ctx: Context, workdir: Path, files: list[tuple[str, int, int]]) -> None:
    for rel, size, mode in files:
        target = workdir / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                left = size
                while left:
                    chunk = await ctx.read(min(left, 1024 * 1024))
                    if not chunk:
                        raise LagerError(f"upload ended early in {rel[:100]}")
                    out.write(chunk)
                    left -= len(chunk)
            target.chmod(mode | 0o600)
        except OSError as exc:
            raise _storage_error(exc) from None


async def _control_loop(ctx: Context, run: Run) -> None:
    """Read the client's control lines until its side of the channel ends."""
    while True:
        try:
            line = await ctx.read_line(protocol.MAX_CONTROL_LINE, "a control line")
        except LagerError:
            continue
        except (asyncssh.Error, ConnectionError):
            return
        if not line:
            if ctx.process.stdin.at_eof():
                return
            continue
        try:
            msg = decode_control(line)
        except LagerError:
            continue  # a control line the client cannot have meant: ignored, like a stray key
        if isinstance(msg, Enter) and run.link and run.link.pause is not None:
            # Only an Enter that arrives while paused resumes; an early one is dropped.
            run.link.resume("enter", ctx.caller.describe())
        elif isinstance(msg, Signal) and msg.name in _SIGNALS_FROM_CLIENT:
            # A Ctrl-C is a stop even when the script catches it and exits 0 (safe state).
            run.stop_reason = run.stop_reason or f"Ctrl-C by {ctx.caller.describe()}"
            run.signal_group(_SIGNALS_FROM_CLIENT[msg.name])
        elif isinstance(msg, Stop):  # the box's own gentle stop, carried on without the client
            run.stop(f"stopped by {ctx.caller.describe()}")


async def _follow(ctx: Context, run: Run, viewer: ChannelViewer) -> bool:
    """Wait for the run to end or the client to go; True when the run ended."""
    control = watch(asyncio.ensure_future(_control_loop(ctx, run)), f"run {run.id} control")
    gone = asyncio.ensure_future(ctx.process.wait_closed())
    ended = asyncio.ensure_future(run.done.wait())
    await asyncio.wait([gone, ended], return_when=asyncio.FIRST_COMPLETED)
    control.cancel()
    run.log.detach(viewer)
    gone.cancel()
    return run.done.is_set()


async def _finish(ctx: Context, run: Run) -> None:
    # asyncssh sends the exit status at once but buffered output later: flush the output
    # first, so a client that ends on the status has every byte before it.
    ctx.process.channel.set_write_buffer_limits(high=0, low=0)
    try:
        if run.timed_out:
            ctx.notice(f"run {protocol.short_id(run.id)} timed out after {run.spec.timeout:g}s "
                       "(--timeout); it was stopped")
        if run.lost:  # the exit below is no script's code: say so, once
            ctx.notice(f"run {protocol.short_id(run.id)} was lost: its monitor died (a box "
                       "reboot, or a kill) before the script's end was recorded, so its exit "
                       "code is unknown")
        safe = ctx.supervisor.safe_state_note(run.id)
        if safe:  # after the script's own output: the box acted once the script was gone
            ctx.notice(safe)
        await ctx.process.stdout.drain()
        await ctx.process.stderr.drain()
    except (OSError, asyncssh.Error):
        return  # the client is gone; it will reattach for the rest
    ctx.process.exit(run.exit_status if run.exit_status is not None else 1)


def _ticket(head: RunHeader) -> str | None:
    """A queue grant (the `reservation` subsystem's), when the client waited for its turn."""
    ticket = head.ticket
    if ticket is not None and (not ticket.isalnum() or len(ticket) > 64):
        raise LagerError("malformed run request: ticket must be the queue's grant")
    return ticket


async def handle_run(ctx: Context) -> None:
    raw = await ctx.read_line(MAX_HEADER, "the run request")
    head = read_header(raw)
    spec, files, warnings = parse_header(head)
    ticket = _ticket(head)
    # Each client gets the form of its own version (lager.protocol.version): a v1 header that
    # says "events" anyway gets plain output, as v1 has no framed form.
    served = version.served_version(head.v)
    framed = head.events and served >= 2 and not spec.detach
    try:
        run_id, workdir = ctx.supervisor.new_workdir()
    except OSError as exc:
        raise _storage_error(exc) from None
    viewer = None if spec.detach else ChannelViewer(ctx.process, framed=framed)
    ctx.framed = framed
    if viewer is not None:
        # First, before any notice: a client that sees no hello speaks to an older box.
        await viewer.event_unlocked(Hello(v=served, run_id=run_id))
    try:
        if ticket is None:  # a refused run is refused before its upload (asked again at start)
            ctx.reservations.check(ctx.caller, RUN)
        await _receive_files(ctx, workdir, files)
        for warning in warnings:
            ctx.notice(warning)
        # The box's reservation: held for the run from here to its end (box_agent/reservations.py).
        hold = ctx.reservations.begin_run(ctx.caller, spec.label, ticket)
        try:
            # Attach before the process exists so not one byte of its output can be missed.
            run = await ctx.supervisor.start(run_id, workdir, spec, ctx.caller, viewer=viewer)
        except BaseException:
            ctx.reservations.run_failed(hold)
            raise
        ctx.reservations.run_started(hold)
    except BaseException:
        # A refused run leaves nothing behind: neither its dir nor its monitor's.
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(ctx.supervisor.monitor_dir(run_id), ignore_errors=True)
        raise
    if viewer is None:
        ctx.process.stdout.write(RunStarted(run.id, protocol.short_id(run.id)).encode())
        ctx.process.exit(0)
        return
    if await _follow(ctx, run, viewer):
        await _finish(ctx, run)
    elif run.spec.stop_on_disconnect:
        run.stop("client disconnected (--stop-on-disconnect)")
    # Otherwise the run goes on: only an explicit stop ends it (Ctrl-C, --kill, --timeout).


def _attach_version(ctx: Context) -> int:
    """The version an attach client speaks: LAGER_PROTOCOL in its channel env (its first line
    keeps the form OpenSSH users type), 1 without it."""
    raw = ctx.env.get(protocol.ENV_PROTOCOL, "1").strip()
    if not raw.isdigit() or len(raw) > 9:
        raise LagerError(f"{protocol.ENV_PROTOCOL} must be a protocol version (1, 2, ...)")
    found = version.version_of({"v": int(raw)})
    refusal = version.client_refusal(found)
    if refusal:
        raise LagerError(refusal)
    return found


async def handle_attach(ctx: Context) -> None:
    speaks = _attach_version(ctx)
    request = parse_attach(await ctx.request_query())
    run = ctx.supervisor.find(request.id)
    ctx.reservations.operated(ctx.caller, "reattach", run)
    served = version.served_version(speaks)
    viewer = ChannelViewer(ctx.process, framed=served >= 2)
    ctx.framed = viewer.framed
    async with viewer.lock:
        await viewer.event_unlocked(Hello(v=served, run_id=run.id))
        if run.link is not None and run.link.pause is not None and not run.done.is_set():
            # A client attaching to a paused run learns the pause before the backlog.
            await viewer.event_unlocked(run.link.pause.notice(run.id))
        if request.have is None:
            backlog, dropped = run.log.attach(viewer, with_backlog=True)
        else:
            backlog, dropped = run.log.attach_at(viewer, *request.have)
        if dropped:
            ctx.notice(f"[{dropped} bytes of earlier output were dropped from the box's log]")
        for stream, data in backlog:
            await viewer.write_unlocked(stream, data)
    if run.done.is_set():
        run.log.detach(viewer)
        await _finish(ctx, run)
    elif await _follow(ctx, run, viewer):
        await _finish(ctx, run)

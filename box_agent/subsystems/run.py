"""`run` starts a script and streams it; `attach` (--reattach) joins a run already going.

Channel protocol of `run`: one JSON header line (see `parse_header`), then the bytes of each
file it lists, in order. After that the client may send JSON control lines: {"op": "enter"}
(resume a pause, counted only while paused) and {"op": "signal", "name": "INT"}.
Script stdout is the channel's stdout, script stderr its stderr, the exit code its exit status.
"""
from __future__ import annotations

import asyncio
import errno
import json
import shutil
import signal
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from lager import protocol
from lager.errors import LagerError

from ..output_log import STDOUT
from ..runs import Run, RunSpec
from .common import Context, watch

MAX_HEADER = 1024 * 1024
MAX_UPLOAD = protocol.MAX_UPLOAD
_SIGNALS_FROM_CLIENT = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}


# What lager's client takes per packet; other clients take less and asyncssh splits further,
# which costs only on their (slower) channels.
WRITE_PIECE = protocol.MAX_PACKET


class ChannelViewer:
    """Writes a run's output to one SSH channel, waiting for it to drain (backpressure)."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.process = process
        self.lock = asyncio.Lock()  # held while the backlog is written, so live output waits

    async def output(self, stream: int, data: bytes) -> None:
        async with self.lock:
            await self.write_unlocked(stream, data)

    async def write_unlocked(self, stream: int, data: bytes) -> None:
        if self.process.is_closing():
            raise ConnectionError("channel closed")
        target = self.process.stdout if stream == STDOUT else self.process.stderr
        # In pieces of at most one packet: asyncssh copies what it is given and sends a longer
        # buffer by slicing a packet off its front and shifting the rest down, which for the
        # monitor's 1 MiB records cost more than encrypting them.
        view = memoryview(data)
        try:
            for start in range(0, len(view), WRITE_PIECE):
                target.write(view[start:start + WRITE_PIECE])  # type: ignore[arg-type]
            await target.drain()
        except asyncssh.Error as exc:
            # A client killed mid-stream: asyncssh's ConnectionLost is no ConnectionError, and
            # let through it ended the agent's tracking of a run that was still going.
            raise ConnectionError(str(exc)) from None


MAX_FILES = 20_000
_NAME_MAX = 255


def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise LagerError(f"malformed run request: {what} contains a NUL byte")
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_files(entries: Any) -> list[tuple[str, int, int]]:
    if not isinstance(entries, list):
        raise LagerError("malformed run request: files must be a list")
    if len(entries) > MAX_FILES:
        raise LagerError(f"upload has more than {MAX_FILES} files")
    files = []
    for entry in entries:
        if not isinstance(entry, dict) or not _is_int(entry.get("size")) \
                or not 0 <= entry["size"] <= MAX_UPLOAD:
            raise LagerError("malformed run request: bad file entry")
        mode = entry.get("mode", 0o644)
        if not _is_int(mode) or not 0 <= mode <= 0o7777:
            raise LagerError("malformed run request: a file mode must be an integer permission")
        files.append((_safe_relpath(entry.get("path")), entry["size"], mode & 0o755))
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


def _parse_json_line(raw: bytes, what: str) -> dict[str, Any]:
    try:
        head = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        head = None
    if not isinstance(head, dict):
        raise LagerError(f"malformed {what}: the first line must be a JSON object")
    return head


def _client_ref(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isalnum():
        raise LagerError("malformed run request: client_ref must be up to 64 letters or digits")
    return value


def parse_header(raw: bytes) -> tuple[RunSpec, list[tuple[str, int, int]], list[str]]:
    """Validate the run request; returns the spec, the files to receive, and warnings."""
    head = _parse_json_line(raw, "run request")
    files = _parse_files(head.get("files", []))
    if sum(size for _, size, _ in files) > MAX_UPLOAD:
        raise LagerError(f"upload larger than {MAX_UPLOAD // 2**20} MiB")
    main = _safe_relpath(head.get("main"))
    if main not in {path for path, _, _ in files}:
        raise LagerError(f"malformed run request: {main[:100]!r} is not among the uploaded files")
    args, env = head.get("args", []), head.get("env", {})
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise LagerError("malformed run request: args must be strings")
    for arg in args:
        _no_nul(arg, "an argument")
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise LagerError("malformed run request: env values must be strings")
    for name, value in env.items():
        if not protocol.valid_env_name(name):
            raise LagerError(f"invalid --env name {name[:100]!r}")
        _no_nul(value, f"--env {name}")
    timeout = head.get("timeout", 0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0 \
            or timeout != timeout:
        raise LagerError("--timeout must be a number of seconds, 0 or more")
    warnings = []
    if timeout > protocol.MAX_RUN_TIMEOUT:
        warnings.append(f"warning: --timeout {timeout:g}s is capped at "
                        f"{protocol.MAX_RUN_TIMEOUT:g}s on this box")
        timeout = protocol.MAX_RUN_TIMEOUT
    display, box = head.get("script"), head.get("box")
    if display is not None and not isinstance(display, str):
        raise LagerError("malformed run request: script must be a string")
    display = _no_nul(display or main, "the script name")
    if isinstance(box, str) and box:
        env = {protocol.ENV_BOX_NAME: _no_nul(box, "the box name"), **env}
    safe = head.get("safe_state", protocol.SAFE_STATE_ON_FAILURE)
    if safe not in protocol.SAFE_STATE_CHOICES:
        raise LagerError(f"--safe-state must be one of {', '.join(protocol.SAFE_STATE_CHOICES)}")
    pause_on_failure = head.get("pause_on_failure") is True
    if pause_on_failure:  # the flag wins over an --env of the same switch
        env = {**env, protocol.ENV_PAUSE_ON_FAILURE: "1"}
    if protocol.switched_on(env.get(protocol.ENV_PAUSE_ON_FAILURE)):
        # A script that runs pytest.main() before it imports lager still gets the plugin.
        env[protocol.PYTEST_PLUGINS_ENV] = protocol.with_pytest_plugin(
            env.get(protocol.PYTEST_PLUGINS_ENV))
    spec = RunSpec(display_name=display, main=main, args=args, env=env,
                   timeout=float(timeout), detach=bool(head.get("detach")),
                   stop_on_disconnect=head.get("stop_on_disconnect") is True,
                   client_ref=_client_ref(head.get("client_ref")), safe_state=safe,
                   pause_on_failure=pause_on_failure)
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
            msg = protocol.decode_msg(line)
        except (ValueError, RecursionError):
            continue  # a control line the client cannot have meant: ignored, like a stray key
        op, name = msg.get("op"), msg.get("name")
        if op == "enter" and run.link and run.link.pause is not None:
            # Only an Enter that arrives while paused resumes; an early one is dropped.
            run.link.resume("enter", ctx.caller.describe())
        elif op == "signal" and isinstance(name, str) and name in _SIGNALS_FROM_CLIENT:
            # A Ctrl-C is a stop even when the script catches it and exits 0 (safe state).
            run.stop_reason = run.stop_reason or f"Ctrl-C by {ctx.caller.describe()}"
            run.signal_group(_SIGNALS_FROM_CLIENT[name])
        elif op == "stop":  # the box's own gentle stop, carried on without the client
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
        safe = ctx.supervisor.safe_state_note(run.id)
        if safe:  # after the script's own output: the box acted once the script was gone
            ctx.notice(safe)
        await ctx.process.stdout.drain()
        await ctx.process.stderr.drain()
    except (OSError, asyncssh.Error):
        return  # the client is gone; it will reattach for the rest
    ctx.process.exit(run.exit_status if run.exit_status is not None else 1)


async def handle_run(ctx: Context) -> None:
    raw = await ctx.read_line(MAX_HEADER, "the run request")
    spec, files, warnings = parse_header(raw)
    try:
        run_id, workdir = ctx.supervisor.new_workdir()
    except OSError as exc:
        raise _storage_error(exc) from None
    viewer = None if spec.detach else ChannelViewer(ctx.process)
    try:
        await _receive_files(ctx, workdir, files)
        for warning in warnings:
            ctx.notice(warning)
        # Attach before the process exists so not one byte of its output can be missed.
        run = await ctx.supervisor.start(run_id, workdir, spec, ctx.caller, viewer=viewer)
    except BaseException:
        # A refused run leaves nothing behind: neither its dir nor its monitor's.
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(ctx.supervisor.monitor_dir(run_id), ignore_errors=True)
        raise
    if viewer is None:
        ctx.write_json({"id": run.id, "short_id": protocol.short_id(run.id)})
        ctx.process.exit(0)
        return
    if await _follow(ctx, run, viewer):
        await _finish(ctx, run)
    elif run.spec.stop_on_disconnect:
        run.stop("client disconnected (--stop-on-disconnect)")
    # Otherwise the run goes on: only an explicit stop ends it (Ctrl-C, --kill, --timeout).


def _parse_attach(query: str) -> tuple[str, tuple[int, int] | None]:
    """`ID`, or `ID STDOUT_BYTES STDERR_BYTES` from a client that goes on where it stopped."""
    words = query.split()
    if len(words) == 3 and all(w.isdigit() and len(w) < 19 for w in words[1:]):
        return words[0], (int(words[1]), int(words[2]))
    if len(words) > 1:
        raise LagerError("attach wants one line: ID [STDOUT_BYTES STDERR_BYTES]")
    return query, None


async def handle_attach(ctx: Context) -> None:
    query, have = _parse_attach(await ctx.request_query())
    run = ctx.supervisor.find(query)
    viewer = ChannelViewer(ctx.process)
    async with viewer.lock:
        if have is None:
            backlog, dropped = run.log.attach(viewer, with_backlog=True)
        else:
            backlog, dropped = run.log.attach_at(viewer, *have)
        if dropped:
            ctx.notice(f"[{dropped} bytes of earlier output were dropped from the box's log]")
        for stream, data in backlog:
            await viewer.write_unlocked(stream, data)
    if run.done.is_set():
        run.log.detach(viewer)
        await _finish(ctx, run)
    elif await _follow(ctx, run, viewer):
        await _finish(ctx, run)

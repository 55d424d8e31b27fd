"""`run` starts a script and streams it; `attach` (--reattach) joins a run already going.

Channel protocol of `run`: one JSON header line (see `parse_header`), then the bytes of each
file it lists, in order. After that the client may send JSON control lines: {"op": "enter"}
(resume a pause, counted only while paused) and {"op": "signal", "name": "INT"}.
Script stdout is the channel's stdout, script stderr its stderr, the exit code its exit status.
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from lager import protocol
from lager.errors import LagerError

from ..output_log import STDOUT
from ..runs import Run, RunSpec
from .common import Context

MAX_HEADER = 1024 * 1024
MAX_UPLOAD = 512 * 1024 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIGNALS_FROM_CLIENT = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}


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
        target.write(data)
        await target.drain()


def _safe_relpath(path: Any) -> str:
    if not isinstance(path, str) or not path or "\x00" in path:
        raise LagerError("upload has a file with no name")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise LagerError(f"upload path {path!r} must be relative, without '..'")
    return str(pure)


def parse_header(raw: bytes) -> tuple[RunSpec, list[tuple[str, int, int]], list[str]]:
    """Validate the run request; returns the spec, the files to receive, and warnings."""
    try:
        head = json.loads(raw)
        assert isinstance(head, dict)
    except (ValueError, AssertionError):
        raise LagerError("malformed run request: the first line must be a JSON object") from None
    files = []
    for entry in head.get("files", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) \
                or entry["size"] < 0:
            raise LagerError("malformed run request: bad file entry")
        files.append((_safe_relpath(entry.get("path")), entry["size"],
                      int(entry.get("mode", 0o644)) & 0o755))
    if sum(size for _, size, _ in files) > MAX_UPLOAD:
        raise LagerError(f"upload larger than {MAX_UPLOAD // 2**20} MiB")
    main = _safe_relpath(head.get("main"))
    if main not in {path for path, _, _ in files}:
        raise LagerError(f"malformed run request: {main!r} is not among the uploaded files")
    args, env = head.get("args", []), head.get("env", {})
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise LagerError("malformed run request: args must be strings")
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise LagerError("malformed run request: env values must be strings")
    for name in env:
        if not _ENV_NAME.match(name):
            raise LagerError(f"invalid --env name {name!r}")
    timeout = head.get("timeout", 0)
    if not isinstance(timeout, (int, float)) or timeout < 0 or timeout != timeout:
        raise LagerError("--timeout must be a number of seconds, 0 or more")
    warnings = []
    if timeout > protocol.MAX_RUN_TIMEOUT:
        warnings.append(f"warning: --timeout {timeout:g}s is capped at "
                        f"{protocol.MAX_RUN_TIMEOUT:g}s on this box")
        timeout = protocol.MAX_RUN_TIMEOUT
    display = str(head.get("script") or main)
    box = head.get("box")
    if isinstance(box, str) and box:
        env = {protocol.ENV_BOX_NAME: box, **env}
    spec = RunSpec(display_name=display, main=main, args=args, env=env,
                   timeout=float(timeout), detach=bool(head.get("detach")),
                   stop_on_disconnect=head.get("stop_on_disconnect") is True)
    return spec, files, warnings


async def _receive_files(ctx: Context, workdir: Path, files: list[tuple[str, int, int]]) -> None:
    for rel, size, mode in files:
        target = workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            left = size
            while left:
                chunk = await ctx.read(min(left, 1024 * 1024))
                if not chunk:
                    raise LagerError(f"upload ended early in {rel}")
                out.write(chunk)
                left -= len(chunk)
        target.chmod(mode | 0o600)


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
        except ValueError:
            continue
        if msg.get("op") == "enter" and run.link and run.link.pause is not None:
            # Only an Enter that arrives while paused resumes; an early one is dropped.
            run.link.resume("enter", ctx.caller.describe())
        elif msg.get("op") == "signal" and msg.get("name") in _SIGNALS_FROM_CLIENT:
            run.signal_group(_SIGNALS_FROM_CLIENT[msg["name"]])
        elif msg.get("op") == "stop":  # the box's own gentle stop, carried on without the client
            run.stop(f"stopped by {ctx.caller.describe()}")


async def _follow(ctx: Context, run: Run, viewer: ChannelViewer) -> bool:
    """Wait for the run to end or the client to go; True when the run ended."""
    control = asyncio.ensure_future(_control_loop(ctx, run))
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
        await ctx.process.stdout.drain()
        await ctx.process.stderr.drain()
    except (OSError, asyncssh.Error):
        return  # the client is gone; it will reattach for the rest
    if run.timed_out:
        ctx.notice(f"run {protocol.short_id(run.id)} timed out after {run.spec.timeout:g}s "
                   "(--timeout); it was stopped")
    ctx.process.exit(run.exit_status if run.exit_status is not None else 1)


async def handle_run(ctx: Context) -> None:
    raw = await ctx.read_line(MAX_HEADER, "the run request")
    spec, files, warnings = parse_header(raw)
    run_id, workdir = ctx.supervisor.new_workdir()
    try:
        await _receive_files(ctx, workdir, files)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)  # a failed upload leaves nothing behind
        raise
    for warning in warnings:
        ctx.notice(warning)
    if spec.detach:
        run = await ctx.supervisor.start(run_id, workdir, spec, ctx.caller)
        ctx.write_json({"id": run.id, "short_id": protocol.short_id(run.id)})
        ctx.process.exit(0)
        return
    viewer = ChannelViewer(ctx.process)
    # Attach before the process exists so not one byte of its output can be missed.
    run = await ctx.supervisor.start(run_id, workdir, spec, ctx.caller, viewer=viewer)
    if await _follow(ctx, run, viewer):
        await _finish(ctx, run)
    elif run.spec.stop_on_disconnect:
        run.stop("client disconnected (--stop-on-disconnect)")
    # Otherwise the run goes on: only an explicit stop ends it (Ctrl-C, --kill, --timeout).


async def handle_attach(ctx: Context) -> None:
    run = await ctx.run_from_request()
    viewer = ChannelViewer(ctx.process)
    async with viewer.lock:
        backlog, dropped = run.log.attach(viewer, with_backlog=True)
        if dropped:
            ctx.notice(f"[{dropped} bytes of earlier output were dropped from the box's log]")
        for stream, data in backlog:
            await viewer.write_unlocked(stream, data)
    if run.done.is_set():
        run.log.detach(viewer)
        await _finish(ctx, run)
    elif await _follow(ctx, run, viewer):
        await _finish(ctx, run)

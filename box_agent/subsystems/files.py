"""`download`: files a run wrote in its working dir, once the run has ended (issue 11).

Request, line one: a DownloadRequest (lager.protocol.channel), {"id": RUN_ID, "paths":
["results.csv", "logs/", ...]}, each path relative to the run's dir. A directory brings every
regular file below it. Answer on stdout, per file: a DownloadFile line {"path", "size", "mode"}
and then exactly `size` bytes; last, a DownloadEnd line {"end": true, "missing": [{"path",
"reason"}, ...]}; exit status 0. A refusal (unknown id, a run still going, a malformed request)
is one line and status 1.

A script decides what its run dir holds, so nothing here follows a link (ISSUE-NOTES 8): each
path component is opened with O_NOFOLLOW below the run dir's own descriptor, only regular
files are sent, and under privilege separation only files the run's own uid owns.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from lager.errors import LagerError
from lager.protocol import version
from lager.protocol.channel import DownloadEnd, DownloadFile, DownloadMissing, DownloadRequest
from lager.protocol.codec import load_object

from .common import Context

MAX_REQUEST = 64 * 1024
MAX_PATHS = 256
_CHUNK = 256 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Missing(Exception):
    """One requested path that cannot be sent; the rest still are."""


def parse_request(raw: bytes) -> tuple[str, list[str]]:
    body = load_object(raw, DownloadRequest.WHAT)
    refusal = version.client_refusal(version.version_of(body))
    if refusal:
        raise LagerError(refusal)
    head = DownloadRequest.from_dict(body)
    paths = head.paths
    if not paths or len(paths) > MAX_PATHS or not all(p and "\x00" not in p for p in paths):
        raise LagerError(f"malformed download request: paths must be 1 to {MAX_PATHS} names")
    return head.id, paths


def _parts(path: str) -> list[str]:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise Missing("must be relative to the run's dir, without '..'")
    return [p for p in pure.parts if p != "."]


def _open_below(root_fd: int, parts: list[str]) -> int:
    """A descriptor for parts below root_fd, refusing every symlink on the way."""
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nxt = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise Missing("no such file in the run's dir") from None
            except OSError as exc:
                raise Missing("a link, or not readable" if exc.errno in (40, 20)
                              else exc.strerror or str(exc)) from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _walk(fd: int, prefix: str, owner: int | None) -> Iterator[tuple[str, int]]:
    """(relative path, open fd) of each regular file at or below fd; closes what it opens."""
    info = os.fstat(fd)
    if owner is not None and info.st_uid != owner:
        os.close(fd)
        raise Missing("not written by the run")
    if stat.S_ISREG(info.st_mode):
        yield prefix, fd
        return
    if not stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise Missing("not a regular file")
    try:
        names = sorted(os.listdir(fd))
        for name in names:
            try:
                child = os.open(name, _FILE_FLAGS, dir_fd=fd)
            except OSError:
                continue  # a link or something we may not read: skipped inside a directory
            try:
                yield from _walk(child, f"{prefix.rstrip('/')}/{name}" if prefix else name,
                                 owner)
            except Missing:
                continue
    finally:
        os.close(fd)


async def handle_download(ctx: Context) -> None:
    run_id, paths = parse_request(await ctx.read_line(MAX_REQUEST, "the download request"))
    run = ctx.supervisor.find(run_id)
    if not run.done.is_set():
        raise LagerError(f"run {run_id[:16]} is still going; download once it has ended")
    owner = run.identity.uid if run.identity else None
    try:
        root = os.open(run.workdir, _DIR_FLAGS)
    except OSError:
        raise LagerError("the run's dir is gone from the box (runs are kept for a day)") \
            from None
    missing: list[DownloadMissing] = []
    try:
        for path in paths:
            try:
                for rel, fd in _walk(_open_below(root, _parts(path)), "/".join(_parts(path)),
                                     owner):
                    with os.fdopen(fd, "rb") as f:
                        await _send_file(ctx, rel, f)
            except Missing as why:
                missing.append(DownloadMissing(path, str(why)))
    finally:
        os.close(root)
    ctx.process.stdout.write(DownloadEnd(missing=missing).encode())
    ctx.process.exit(0)


async def _send_file(ctx: Context, rel: str, f: Any) -> None:
    info = os.fstat(f.fileno())
    ctx.process.stdout.write(DownloadFile(rel, info.st_size, info.st_mode & 0o777).encode())
    left = info.st_size
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:  # shrank while we read: pad, so the framing the client counts holds
            chunk = b"\0" * min(_CHUNK, left)
        ctx.process.stdout.write(chunk)
        await ctx.process.stdout.drain()
        left -= len(chunk)

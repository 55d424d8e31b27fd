"""`--download`: fetch files a run wrote in its working dir, once it has ended (issue 11).

The box's `download` subsystem frames each file as a JSON line and its bytes (see
box_agent/subsystems/files.py). Files land under the current directory at the paths the run
gave them; a path that would land outside it is refused. A missing file is one line, and the
other files still come. A file that already exists here is kept, unless --allow-overwrite
(`lager python` refuses up front when it can see the clash, before the run starts).
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from lager import protocol
from lager.errors import ConnectionFailed, RemoteError
from lager.protocol.channel import DownloadEnd, DownloadRequest, decode_download

if TYPE_CHECKING:
    from .context import LagerContext

_CHUNK = 256 * 1024


def existing(paths: list[str], dest: Path | None = None) -> list[str]:
    """The requested paths that would replace a file already here."""
    dest = dest or Path.cwd()
    return [p for p in paths if (dest / p).is_file() or (dest / p).is_symlink()]


def fetch(obj: LagerContext, run_id: str, paths: list[str], dest: Path | None = None,
          overwrite: bool = False) -> int:
    """Download `paths` of run `run_id` into dest; returns how many were missing or kept."""
    import click

    dest = (dest or Path.cwd()).resolve()
    with obj.connect() as conn:
        chan = conn.open(protocol.SUB_DOWNLOAD)
        chan.sendall(DownloadRequest(run_id, paths, v=protocol.PROTOCOL_VERSION).encode())
        chan.shutdown_write()
        stream = chan.makefile("rb")
        missing = 0
        while True:
            line = stream.readline()
            if not line:
                err = chan.makefile_stderr("rb").read().decode(errors="replace").strip()
                if chan.recv_exit_status() not in (0, -1):
                    raise RemoteError(err or "the box refused the download")
                raise ConnectionFailed("the connection ended during the download")
            head = decode_download(line)
            if isinstance(head, DownloadEnd):
                for gone in head.missing:
                    click.echo(f"lager: download: {gone.path}: {gone.reason}", err=True)
                    missing += 1
                return missing
            rel, size = head.path, head.size
            if not overwrite and _target(dest, rel).exists():
                _skip(stream, rel, size)  # what is here stays: nothing lost
                click.echo(f"lager: download: {rel}: already exists here, kept "
                           "(--allow-overwrite replaces it)", err=True)
                missing += 1
                continue
            _receive(stream, dest, rel, size, head.mode)


def _target(dest: Path, rel: str) -> Path:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:  # the box never sends one; refuse if it did
        raise RemoteError(f"the box sent a file outside the download dir: {rel!r}")
    return dest.joinpath(*pure.parts)


def _skip(stream: Any, rel: str, size: int) -> None:
    left = size
    while left:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            raise ConnectionFailed(f"the connection ended in the middle of {rel}")
        left -= len(chunk)


def _receive(stream: Any, dest: Path, rel: str, size: int, mode: int) -> None:
    target = _target(dest, rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.lager-part")
    with open(tmp, "wb") as out:
        left = size
        while left:
            chunk = stream.read(min(_CHUNK, left))
            if not chunk:
                tmp.unlink(missing_ok=True)
                raise ConnectionFailed(f"the connection ended in the middle of {rel}")
            out.write(chunk)
            left -= len(chunk)
    os.chmod(tmp, mode & 0o755 | 0o600)
    os.replace(tmp, target)

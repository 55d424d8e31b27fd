"""Start a run (foreground or --detach) and --reattach to one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lager import protocol
from lager.errors import ConnectionFailed, RemoteError, Reserved, refusal
from lager.protocol.channel import FileEntry, RunHeader, RunStarted

from .context import LagerContext, read_all
from .reconnect import EVENTS_ENV, Reattacher, new_client_ref
from .upload import Upload

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .own_pause import OwnPause
    from .run_stream import OnEvent
    from .ssh import BoxConnection

_CHUNK = 256 * 1024


# A dataclass, not a record (client/records.py): the fleet derives its own from it.
@dataclass
class RunRequest:
    """What a run asks the box for: the upload, how the script runs, and how it is followed.
    (A docstring of its own: dataclasses loads inspect only to write a missing one,
    client/lean_imports.py.)"""

    upload: Upload
    args: list[str]
    env: dict[str, str]
    timeout: float
    detach: bool
    # The box stops the run when this client's connection is lost (issue 11, CI's default);
    # a box without it ignores the key and keeps today's behaviour.
    stop_on_disconnect: bool = False
    client_ref: str = field(default_factory=new_client_ref)  # finds the run after a lost link
    # Issue 15: pause where an unhandled exception was raised; when the box puts the run's
    # nets in their safe state (after a bad end only, or "always").
    pause_on_failure: bool = False
    safe_state: str = protocol.SAFE_STATE_ON_FAILURE
    downloads: list[str] = field(default_factory=list)  # fetched once the run has ended
    overwrite: bool = False  # --allow-overwrite: a download may replace a file already here
    # Shared boxes: who is asking, in words (shown by the box, never trusted); how long to
    # queue for a reserved box (None: refused at once); the queue's grant once it came.
    label: str = ""
    wait: float | None = None
    ticket: str | None = None

    def header(self, box_name: str) -> bytes:
        return self.run_header(box_name).encode()

    def run_header(self, box_name: str) -> RunHeader:
        return RunHeader(
            script=self.upload.display_name, main=self.upload.main, args=self.args,
            env=self.env, timeout=self.timeout, detach=self.detach, box=box_name,
            files=[FileEntry.from_dict(f) for f in self.upload.header_files()],
            stop_on_disconnect=self.stop_on_disconnect, client_ref=self.client_ref,
            pause_on_failure=self.pause_on_failure, safe_state=self.safe_state,
            v=protocol.PROTOCOL_VERSION, events=not self.detach, label=self.label,
            ticket=self.ticket)


def upload_chunks(request: RunRequest, box_name: str) -> Iterator[bytes]:
    """The run request's header line, then every file's bytes in the header's order: what the
    box's `run` subsystem reads as the upload (one box here; the fleet, one per box)."""
    yield request.header(box_name)
    for _, local in request.upload.files:
        with open(local, "rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk


def send_upload(chan: object, request: RunRequest, box_name: str) -> None:
    for chunk in upload_chunks(request, box_name):
        chan.sendall(chunk)  # type: ignore[attr-defined]


def _commands_hint(box: str, run_id: str) -> str:
    return (f"reattach: lager python --reattach {run_id} --box {box}\n"
            f"kill:     lager python --kill {run_id} --box {box}")


def run_script(obj: LagerContext, request: RunRequest, *, on_event: OnEvent | None = None,
               show_banners: bool = True) -> int:
    """Run and follow a script; on_event and show_banners go to the Follower (its docs)."""
    if request.wait is not None:  # CI or --wait: stand in the box's queue first
        from .reservation_wait import queue_then_start

        def start(conn: BoxConnection, ticket: str) -> int:
            request.ticket = ticket
            return _start(obj, conn, request, on_event, show_banners)
        return queue_then_start(obj, request.label, request.wait, start)
    from . import quick_run

    if quick_run.planned(obj.box(), request.detach, request.wait):
        chan = quick_run.start(obj, request)  # None: the quick client can't; the full way can
        if chan is not None:
            from .side_keeper import SideKeeper

            side = SideKeeper(obj)
            try:
                return _follow(obj, chan, request, on_event, show_banners, side.serve,
                               side.on_event)
            finally:
                chan.close()
    with obj.connect() as conn:
        return _start(obj, conn, request, on_event, show_banners)


def _start(obj: LagerContext, conn: BoxConnection, request: RunRequest,
           on_event: OnEvent | None, show_banners: bool) -> int:
    box = obj.box()
    chan = conn.open(protocol.SUB_RUN)
    try:
        send_upload(chan, request, box.name)
    except OSError as exc:
        if chan.exit_status_ready():  # the box refused the run before taking all of it
            raise refusal("run", read_all(chan)[1], chan.recv_exit_status()) from None
        raise ConnectionFailed(f"upload to box {box.name} failed: {exc}") from None
    if request.detach:
        import click  # only here: a foreground run's start does without it (issue 13)

        out, err = read_all(chan)
        status = chan.recv_exit_status()
        if status == protocol.EXIT_RESERVED:
            raise Reserved(err.strip() or "the box is reserved")
        if status != 0:
            raise RemoteError(err.strip() or "the box refused the run")
        for line in err.splitlines():
            click.echo(line, err=True)
        started = RunStarted.decode(out)
        click.echo(f"started run {started.id} (detached)")
        click.echo(_commands_hint(box.name, started.short_id))
        return 0

    def serve(own: OwnPause, again: Reattacher) -> Callable[[], None]:
        from . import run_keeper  # issue 13: this run serves the other terminals' requests

        serving = run_keeper.serve(obj.config, box, lambda: again.conn or conn, own)
        return lambda: run_keeper.stop(serving)

    return _follow(obj, chan, request, on_event, show_banners, serve)


def _follow(obj: LagerContext, chan: Any, request: RunRequest, on_event: OnEvent | None,
            show_banners: bool, serve: Callable[[OwnPause, Reattacher], Callable[[], None]],
            wrap_events: Callable[[OnEvent], OnEvent] | None = None) -> int:
    """Follow a started run to its end. `serve`: how the run serves its user's other
    terminals (client/run_keeper.py), started now; it returns how to stop."""
    box = obj.box()
    again = Reattacher(obj, client_ref=request.client_ref)
    # Imported once the upload is out: the box is starting the script meanwhile (~20 ms in
    # which this process would only wait), so these imports no longer delay the first byte.
    from .follow import Follower
    from .own_pause import OwnPause

    own = OwnPause()  # numbers its own run's bare --continue, from the notices (rule 9)
    events = own.chain(on_event)
    follower = Follower(chan, box.name, stops_run=True, reconnect=own.reconnecting(again),
                        on_event=wrap_events(events) if wrap_events else events,
                        show_banners=show_banners)
    stop_serving = serve(own, again)
    try:
        status = follower.run()
        if request.downloads and not follower.left:
            _download(obj, follower.run_id or again.run_id_now(), request.downloads,
                      request.overwrite)
        return status
    finally:
        stop_serving()
        again.close()


def reattach(obj: LagerContext, run_id: str, downloads: list[str] | None = None, *,
             on_event: OnEvent | None = None, show_banners: bool = True,
             overwrite: bool = False) -> int:
    box = obj.box()
    from . import preconnect

    preconnect.start(box)  # the connect and our version line go out while paramiko imports
    with obj.connect() as conn:
        chan = conn.open(protocol.SUB_ATTACH, env=EVENTS_ENV)
        chan.sendall((run_id + "\n").encode())
        hint = f"reattach again: lager python --reattach {run_id} --box {box.name}"
        again = Reattacher(obj, run_id=run_id)
        from . import run_keeper  # issue 13: this run serves the other terminals' requests
        from .follow import Follower
        from .own_pause import OwnPause

        own = OwnPause()  # numbers its own run's bare --continue, from the notices (rule 9)
        follower = Follower(chan, box.name, stops_run=False, leave_hint=hint,
                            reconnect=own.reconnecting(again), on_event=own.chain(on_event),
                            show_banners=show_banners)
        serving = run_keeper.serve(obj.config, box, lambda: again.conn or conn, own)
        try:
            status = follower.run()
        finally:
            run_keeper.stop(serving)
            again.close()
    # Only a run the box found (its Hello came): an unknown id was said once already.
    if downloads and not follower.left and follower.run_id:
        _download(obj, follower.run_id, downloads, overwrite)
    return status


def _download(obj: LagerContext, run_id: str, paths: list[str], overwrite: bool) -> None:
    """Fetch what the run wrote; a missing path is one line, and the run's code stands."""
    from .download import fetch

    fetch(obj, run_id, paths, overwrite=overwrite)

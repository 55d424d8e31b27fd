"""A script run's request, as `lager python SCRIPT` makes it: one place for the click command
(client/commands/python.py) and its click-free common form (client/script_fastpath.py), so the
two cannot drift apart."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lager import protocol

if TYPE_CHECKING:
    from .context import LagerContext


def stops_on_disconnect_by_default(detach: bool) -> bool:
    """On under CI=true, so a cancelled job takes its run with it; never for a detached run
    (its client leaves at once)."""
    return not detach and os.environ.get("CI", "").strip().lower() == "true"


def run(obj: LagerContext, script: str, args: list[str], *, env: dict[str, str] | None = None,
        timeout: float = 0.0, detach: bool = False, stop_on_disconnect: bool | None = None,
        pause_on_failure: bool = False, safe_state: str = protocol.SAFE_STATE_ON_FAILURE,
        downloads: tuple[str, ...] = (), overwrite: bool = False,
        add_files: tuple[str, ...] = (), wait: str | None = None) -> int:
    """Upload SCRIPT and run it on the box (following it unless detached); its exit code.
    The defaults are the python command's own (tests/unit/test_script_fastpath_vs_click.py)."""
    from . import preconnect, reservation_wait
    from .upload import build_upload

    upload = build_upload(script, add_files)  # the input checked before anything connects
    label, queue_for = reservation_wait.label(), reservation_wait.wait_seconds(wait)
    # The box's TCP connect and greeting come in while the rest of the run's client imports:
    # with the version line of the client that will take it (client/quick_run.py).
    from . import quick_run

    box = obj.box()
    quick = quick_run.planned(box, detach, queue_for)
    preconnect.start(box, quick_run.VERSION.decode() if quick else None)
    from .run_client import RunRequest, run_script

    environment = dict(env or {})
    if obj.debug:  # the run's uncaught lager errors keep their traceback (lager/uncaught.py)
        environment.setdefault("LAGER_DEBUG", "1")
    if stop_on_disconnect is None:
        stop_on_disconnect = stops_on_disconnect_by_default(detach)
    request = RunRequest(upload=upload, args=list(args), env=environment, timeout=timeout,
                         detach=detach, stop_on_disconnect=stop_on_disconnect,
                         pause_on_failure=pause_on_failure, safe_state=safe_state,
                         downloads=list(downloads), overwrite=overwrite, label=label,
                         wait=queue_for)
    return run_script(obj, request)

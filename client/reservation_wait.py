"""The client's side of shared boxes: the label it offers, how long it waits, and the wait.

The label says which CI job or which user@host is asking; the box shows it beside the
identity that logged in and trusts it for nothing. Waiting (CI=true, or `--wait S`) stands in
the box's first-come queue on a `reservation` channel: the box pushes the place whenever it
changes (nothing polls) and then a grant, which the run presents as its ticket. The channel
stays open for the run's whole life: a client that dies before its run starts frees the grant.
A connection lost while waiting queues again, within the wait's budget (`queue_then_start`).
"""
from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lager import protocol
from lager.errors import ConnectionFailed, RemoteError, Reserved, UsageError
from lager.protocol.codec import ProtocolError
from lager.protocol.reservation import Granted, Refusal, WaitRequest, decode_queue_line

from .records import record

if TYPE_CHECKING:
    from .context import LagerContext
    from .ssh import BoxConnection

# Reconnecting to a box that went away while we waited (an agent restart takes a moment).
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0

# The CI's own variables, checked in this order: (variable that marks it, how to name the job).
_CI_LABELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("GITHUB_ACTIONS", ("GITHUB_REPOSITORY", "GITHUB_WORKFLOW", "GITHUB_RUN_ID", "GITHUB_JOB"),
     "GitHub Actions {0} {1} run {2} job {3}"),
    ("GITLAB_CI", ("CI_PROJECT_PATH", "CI_JOB_NAME", "CI_JOB_ID"), "GitLab {0} job {1} #{2}"),
    ("JENKINS_URL", ("JOB_NAME", "BUILD_NUMBER"), "Jenkins {0} #{1}"),
    ("BUILDKITE", ("BUILDKITE_PIPELINE_SLUG", "BUILDKITE_BUILD_NUMBER", "BUILDKITE_LABEL"),
     "Buildkite {0} #{1} {2}"),
    ("CIRCLECI", ("CIRCLE_PROJECT_REPONAME", "CIRCLE_BUILD_NUM", "CIRCLE_JOB"),
     "CircleCI {0} #{1} {2}"),
    ("TF_BUILD", ("BUILD_DEFINITIONNAME", "BUILD_BUILDNUMBER"), "Azure Pipelines {0} {1}"),
    ("TRAVIS", ("TRAVIS_REPO_SLUG", "TRAVIS_JOB_NUMBER"), "Travis {0} job {1}"),
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def label() -> str:
    """Who is asking, in words: the CI job from the CI's own variables, else user@host.
    The real lager's LAGER_LOCK_HOLDER still names it; it is a label like any other."""
    given = os.environ.get("LAGER_LOCK_HOLDER", "").strip()
    if given:
        return given
    for marker, names, form in _CI_LABELS:
        if os.environ.get(marker):
            return " ".join(form.format(*(os.environ.get(n, "?") for n in names)).split())
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()}"


def wait_seconds(option: str | None) -> float | None:
    """How long to queue for a reserved box: `--wait S`, else under CI=true LAGER_LOCK_WAIT
    (1800 s); None on a laptop, which is refused at once."""
    if option is not None:
        return _seconds(option, "--wait")
    if in_ci():
        value = os.environ.get(protocol.ENV_LOCK_WAIT, "").strip()
        return _seconds(value, protocol.ENV_LOCK_WAIT) if value else protocol.DEFAULT_LOCK_WAIT
    return None


def _seconds(value: str, what: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a number of seconds") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise UsageError(f"{what} {value!r} must be 0 or more seconds")
    return seconds


def _readline(chan: Any, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        data = chan.recv(65536)
        if not data:
            return None
        buf += data
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def _stderr_of(chan: Any) -> str:
    err = bytearray()
    while True:
        data = chan.recv_stderr(65536)
        if not data:
            return err.decode("utf-8", "replace").strip()
        err += data


@record
class Spot:
    """This client's place in the box's queue: the token that keeps it across a restart."""

    token: str | None = None


def wait_turn(conn: Any, box_name: str, who: str, seconds: float,
              spot: Spot | None = None, show: Callable[[str], None] | None = None,
              opened: Callable[[Any], None] | None = None) -> tuple[str, Any]:
    """Queue on the box until this client's turn: (the ticket, the channel that keeps the
    grant; close it once the run is over). A refusal or giving up raises Reserved (exit 75),
    with the box's structured reason as its details; a connection lost meanwhile raises
    ConnectionFailed (`queue_then_start` queues again). Ctrl-C leaves the queue (130,
    ISSUE-NOTES 1): the box sees the channel close. `show` gets each place line (a fleet
    prefixes its box; stderr otherwise); `opened` gets the channel, so a fleet can close it
    to leave the queue on Ctrl-C."""
    from paramiko import SSHException

    try:
        chan = conn.open(protocol.SUB_RESERVATION)
        if opened is not None:
            opened(chan)
        spot = spot or Spot()
        chan.sendall(WaitRequest(label=who, wait=seconds, token=spot.token).encode())
        return _read_turn(chan, box_name, spot, show)
    except (OSError, EOFError, SSHException) as exc:
        raise ConnectionFailed(f"lost the connection to box {box_name} while waiting for "
                               f"its turn ({str(exc) or type(exc).__name__})") from None


def _read_turn(chan: Any, box_name: str, spot: Spot,
               show: Callable[[str], None] | None) -> tuple[str, Any]:
    buf = bytearray()
    details: dict[str, Any] = {}
    while True:
        line = _readline(chan, buf)
        if line is None:
            status = chan.recv_exit_status()
            reason = _stderr_of(chan)
            chan.close()
            if status == protocol.EXIT_RESERVED:
                raise Reserved(reason or f"box {box_name} is reserved", details)
            if status < 0:
                raise ConnectionFailed(f"lost the connection to box {box_name} while waiting "
                                       "for its turn")
            raise RemoteError(reason or f"box {box_name} refused to queue the run")
        try:
            msg = decode_queue_line(line)
        except ProtocolError as exc:
            chan.close()
            raise RemoteError(f"box {box_name}: {exc}") from None
        if isinstance(msg, Granted):
            return msg.granted, chan
        if isinstance(msg, Refusal):
            details = msg.to_dict()  # the holds in the way, just before the status and line
            continue
        spot.token = msg.waiting.token or spot.token
        if show is not None:
            show(msg.waiting.line or "waiting")
        else:
            sys.stderr.write(f"lager: box {box_name}: {msg.waiting.line or 'waiting'} "
                             "(Ctrl-C leaves the queue)\n")
            sys.stderr.flush()


def queue_then_start(obj: LagerContext, label: str, seconds: float,
                     start: Callable[[BoxConnection, str], int]) -> int:
    """Wait for the box's turn, then `start(connection, ticket)` on the same connection, with
    the grant held until it returns. A connection lost while waiting (the agent restarted, or
    `lager-box serve --replace`) is one line, and the client queues again, reconnecting with
    backoff, as long as its --wait budget lasts, and takes back its place in the queue (the
    box keeps the places of its waiters for a while after a restart: box_agent/queue_places)."""
    box_name = obj.box().name
    deadline = time.monotonic() + seconds
    delay = _BACKOFF_FIRST
    lost = False
    spot = Spot()  # the place the box gave us, presented again after a lost connection
    while True:
        try:
            conn = obj.connect()
        except ConnectionFailed:
            left = deadline - time.monotonic()
            if not lost or left <= 0:
                raise
            time.sleep(min(delay, left))  # the agent is coming back (a restart)
            delay = min(delay * 2, _BACKOFF_MAX)
            continue
        with conn:
            try:
                ticket, queue = wait_turn(conn, box_name, label,
                                          max(0.0, deadline - time.monotonic()), spot)
            except ConnectionFailed:
                if deadline - time.monotonic() <= 0:
                    raise
                lost, delay = True, _BACKOFF_FIRST
                left = deadline - time.monotonic()
                sys.stderr.write(f"lager: box {box_name}: lost the connection while waiting "
                                 f"for its turn; queueing again ({left:.0f}s of the wait "
                                 "left)\n")
                sys.stderr.flush()
                continue
            try:
                return start(conn, ticket)
            finally:
                queue.close()

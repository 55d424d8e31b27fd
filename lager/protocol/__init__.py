"""Names and formats shared by the box agent, the in-script library and the client.

Everything a program outside this repository can observe (subsystem names, env variables,
the id form in the banner) is defined here once, so the three sides cannot drift apart.
Every message is a typed class (a dataclass, or codec's own `@message`), defined once in this
package and used by both ends:
- `lager.protocol.link`: the script's breakpoint link and the monitor's socket;
- `lager.protocol.channel`: the run header, control lines, attach and download;
- `lager.protocol.instrument`: the `nets` request (`lager nets`, `lager supply ...`);
- `lager.protocol.keeper`: the connection keeper's socket;
- `lager.protocol.events`: the run channel's framed form and its pause/resume notices;
- `lager.protocol.reservation`: the `reservation` subsystem (lock, unlock, status, the queue);
- `lager.protocol.pauses`: the `pauses` subsystem (the paused runs, then each change);
- `lager.protocol.version`: the version carried in the JSON requests.
docs/protocol.md describes them; tests/unit/test_protocol_doc.py keeps it in step.
"""
from __future__ import annotations

# The version carried in the JSON requests (lager/protocol/version.py has the rules).
PROTOCOL_VERSION = 2

# SSH subsystems the agent serves.
SUB_RUN = "run"
SUB_CONTINUE = "continue"
SUB_CONSOLE = "console"
SUB_LIST = "list"
SUB_ATTACH = "attach"
SUB_KILL = "kill"
SUB_NETS = "nets"
SUB_DOWNLOAD = "download"
# Shared boxes: lock, unlock, status, and the first-come queue (box_agent/reservations.py).
SUB_RESERVATION = "reservation"
# Pause state as it changes: a snapshot of the paused runs, then one line per change
# (box_agent/pause_watch.py; a standalone keeper numbers a bare --continue from it).
SUB_PAUSES = "pauses"

# Channel tuning both ends share: 256 KiB packets and AES-GCM are the measured way to full
# throughput (DESIGN.md). A bit under 256 KiB, because asyncssh checks what a peer sends against
# a fixed 256 KiB limit that counts the packet's header and padding too: a full 256 KiB packet
# had the whole connection dropped.
MAX_PACKET = 256 * 1024 - 1024
WINDOW = 8 * 1024 * 1024
# What the client advertises for the box's output (a run's stream, downloads): nearer the
# bandwidth-delay product of a slow link, which WINDOW capped at WINDOW / RTT (issue 13, 200 MB
# at 50 ms RTT: 72-103 MB/s with 8 MiB, 132-152 with 16). 32 MiB did no better there and cost
# the box twice the CPU per MB on loopback. Only the client's side: the box keeps WINDOW for
# what it receives, so no client can make it hold more per channel.
CLIENT_WINDOW = 16 * 1024 * 1024
# The most a run request may upload (script and --add-file files together).
MAX_UPLOAD = 512 * 1024 * 1024
# The quick client (client/quick_ssh.py, client/quick_channel.py) carries only the short
# commands' small answers. It accepts a packet up to four of the largest a box sends (MAX_PACKET
# of data plus the header and padding asyncssh counts in), so no box's packet is refused, and
# advertises a quarter of WINDOW: a listing fits many times over.
QUICK_PACKET_LIMIT = 4 * (MAX_PACKET + 1024)
QUICK_WINDOW = WINDOW // 4

# Where a box's agent listens, and the port a client dials unless told another.
DEFAULT_PORT = 2222


def valid_env_name(name: str) -> bool:
    """An environment variable name (--env, --passenv): ASCII letters, digits, underscore."""
    return bool(name) and (name[0] == "_" or "A" <= name[0].upper() <= "Z") and \
        all(c == "_" or (c.isascii() and c.isalnum()) for c in name)


# Env a client may set on a channel; asyncssh accepts any name, so the agent keeps only these.
# LAGER_PROTOCOL: the version an attach client speaks (2 asks for the framed form with events).
ENV_PROTOCOL = "LAGER_PROTOCOL"
CHANNEL_ENV_WHITELIST = frozenset({"LAGER_BREAKPOINT", ENV_PROTOCOL, "LANG", "LC_ALL", "TERM"})

# Env the agent gives a script process.
ENV_RUN_ID = "LAGER_RUN_ID"
ENV_AGENT_FD = "LAGER_AGENT_FD"
ENV_AGENT_PID = "LAGER_AGENT_PID"
ENV_SCRIPT_NAME = "LAGER_SCRIPT_NAME"
ENV_BOX_NAME = "LAGER_BOX"
ENV_BENCH_CONFIG = "LAGER_BENCH_CONFIG"
ENV_CLAIMS_DIR = "LAGER_CLAIMS_DIR"
# The nets scripts save on the box (Net.save_local_net), beside the bench file's own.
ENV_SAVED_NETS = "LAGER_SAVED_NETS"
SAVED_NETS_FILE = "saved_nets.json"  # the real lager's name for it
# A copy of the script's own stderr (an inherited fd): banners written there reach the run's
# stderr even while pytest's capture has taken fd 2 over.
ENV_STDERR_FD = "LAGER_STDERR_FD"
# Env the user sets (documented in the spec).
ENV_BREAKPOINT_TIMEOUT = "LAGER_BREAKPOINT_TIMEOUT"
ENV_BREAKPOINTS = "LAGER_BREAKPOINTS"
ENV_BREAKPOINT_ID = "LAGER_BREAKPOINT"
BREAKPOINTS_OFF_VALUES = frozenset({"off", "0", "false", "no"})
# Pause where an unhandled exception was raised (`lager python --pause-on-failure` sets it).
ENV_PAUSE_ON_FAILURE = "LAGER_PAUSE_ON_FAILURE"
# With it, a script's pytest.main() loads this plugin (through PYTEST_PLUGINS): a failing test
# pauses at its assertion.
PYTEST_PLUGINS_ENV = "PYTEST_PLUGINS"
PYTEST_PLUGIN = "lager.breakpoints.pytest_plugin"
# What an auto-resume does: pause(on_timeout=...).
ON_TIMEOUT_CHOICES = ("resume", "safe", "fail")
# When the agent puts a run's nets in their safe state: after any end but a clean exit, or
# after every end (`lager python --safe-state always`).
SAFE_STATE_ON_FAILURE = "on-failure"
SAFE_STATE_ALWAYS = "always"
SAFE_STATE_CHOICES = (SAFE_STATE_ON_FAILURE, SAFE_STATE_ALWAYS)
DEFAULT_BREAKPOINT_TIMEOUT = 300.0

# The box caps a run's total runtime (`lager python --timeout`).
MAX_RUN_TIMEOUT = 300.0
EXIT_TIMED_OUT = 124
# The box is reserved by another identity (EX_TEMPFAIL): a refused run, change or lock.
EXIT_RESERVED = 75
# How long a CI job (CI=true) or `--wait` queues for a reserved box, as the real lager has it.
ENV_LOCK_WAIT = "LAGER_LOCK_WAIT"
DEFAULT_LOCK_WAIT = 1800.0

# Longest id line a continue/console client may send before it is refused.
MAX_ID_LINE = 4096
# Longest control line on the run channel (Enter, signals).
MAX_CONTROL_LINE = 4096

_ID_BYTES = 8
ELLIPSIS = "\u2026"


def new_run_id() -> str:
    import secrets  # only the agent mints ids; scripts and the client never pay for it

    return secrets.token_hex(_ID_BYTES)


def short_id(run_id: str) -> str:
    """The form the banner prints: `7f3a…e9`. Pasting it back must resolve to the run."""
    return f"{run_id[:4]}{ELLIPSIS}{run_id[-2:]}"


def id_matches(query: str, run_id: str) -> bool:
    """True when `query` (full id, unique prefix, or the banner's short form) names run_id."""
    query = query.strip().lower()
    for mark in (ELLIPSIS, "..."):
        head, sep, tail = query.partition(mark)
        if sep:
            return bool(head) and bool(tail) and _hex(head + tail) and \
                run_id.startswith(head) and run_id.endswith(tail)
    return bool(query) and run_id.startswith(query)


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


# `ID#N` names pause number N of a run (the `pause` column of `--list --json`). A numbered
# `continue` resumes only that pause: a retry, or a late one, answers "already resumed" instead
# of resuming whatever pause came next. No `:` in the form, since `BOX:ID` is the fleet's.
PAUSE_MARK = "#"


def split_pause(query: str) -> tuple[str, int | None]:
    """`ID#N` -> (ID, N); a bare ID -> (ID, None). N must be a number."""
    head, mark, tail = query.strip().rpartition(PAUSE_MARK)
    if not mark:
        return query.strip(), None
    if not tail.isdigit() or len(tail) > 9:
        raise ValueError(f"{query.strip()[:40]!r}: after {PAUSE_MARK} comes the pause number")
    return head, int(tail)


# A fleet (issue 18): its id, recorded on each run it starts, and the env each script gets.
FLEET_ID_PREFIX = "f-"
ENV_FLEET_INDEX = "LAGER_FLEET_INDEX"


def valid_fleet_id(value: str) -> bool:
    """`f-` and 4 to 16 lower-case hex digits."""
    digits = value[len(FLEET_ID_PREFIX):]
    return value.startswith(FLEET_ID_PREFIX) and 4 <= len(digits) <= 16 and _hex(digits)


def breakpoints_disabled(value: str | None) -> bool:
    return value is not None and value.strip().lower() in BREAKPOINTS_OFF_VALUES


def switched_on(value: str | None) -> bool:
    """An env switch such as LAGER_PAUSE_ON_FAILURE: set, and not one of the off values."""
    return value is not None and value.strip() != "" and not breakpoints_disabled(value)


def with_pytest_plugin(value: str | None) -> str:
    """A PYTEST_PLUGINS value that also loads lager's plugin."""
    plugins = [p.strip() for p in (value or "").split(",") if p.strip()]
    return ",".join(plugins if PYTEST_PLUGIN in plugins else [*plugins, PYTEST_PLUGIN])


def __getattr__(name: str) -> type:
    # `protocol.ProtocolError` without importing the codec for every script that imports lager.
    if name == "ProtocolError":
        from .codec import ProtocolError

        return ProtocolError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The protocol's version, carried in the JSON requests (run header, attach, keeper, nets,
download).

A request without `v` is version 1: today's OpenSSH users (`ssh -s run` with a hand-written
header, `ssh -s continue` with a bare id line) and lager clients from before versions existed.
The first line of every subsystem keeps its form; `v` is one more key in the JSON ones.

The policy (docs/protocol.md, "Versions"):
- The box serves every client from OLDEST_CLIENT (1) up, each in the form of the version both
  speak (`served_version`, the lower of the two): a v1 run header gets plain output and no
  hello, even when it says "events"; a client newer than the box gets the box's version, which
  the hello names. A client older than OLDEST_CLIENT would get one line (`client_refusal`);
  none is, yet.
- A client works with every box since version 1: the box says its version in its first answer
  (the run channel's hello event, the nets answer's "v") and says nothing when it is older
  than 2, so a client that hears nothing knows it speaks to a version 1 box and says once what
  it will miss (`older_box_note`).

Version history:
1. JSON run header, control lines, nets request; output as the channel's stdout/stderr.
2. `v` and `events` in the run header and attach request: on request, the run channel
   carries framed records (stdout, stderr, events) with structured pause/resume notices.
"""
from __future__ import annotations

from . import PROTOCOL_VERSION
from .codec import ProtocolError

TYPE_CHECKING = False  # typing costs ~5 ms of a short command's start (issue 13)
if TYPE_CHECKING:
    from typing import Any

OLDEST_CLIENT = 1  # the box serves clients from this version up
UPGRADE_CLIENT = "upgrade lager on this machine (pip install -U lager)"
UPGRADE_BOX = "upgrade lager-box on the box, then `lager-box serve --replace`"


def version_of(body: dict[str, Any]) -> int:
    """The `v` of a request: 1 when absent."""
    v = body.get("v", 1)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 1 << 31:
        raise ProtocolError(f"malformed request: v must be a protocol version (1, 2, ...), "
                            f"not {str(v)[:20]!r}")
    return v


def client_refusal(client_v: int, box_v: int = PROTOCOL_VERSION,
                   oldest_client: int = OLDEST_CLIENT) -> str | None:
    """The box's one line to a client too old for it, else None."""
    if client_v >= oldest_client:
        return None
    return (f"this lager client speaks protocol {client_v}, but this box (protocol {box_v}) "
            f"needs {oldest_client} or later: {UPGRADE_CLIENT}")


def older_box_note(box_v: int, box_name: str, missing: str,
                   client_v: int = PROTOCOL_VERSION) -> str:
    """A box old enough to work, but without something this client asked for."""
    return (f"box {box_name} speaks protocol {box_v} and this lager {client_v}: "
            f"{missing}; {UPGRADE_BOX}")


def served_version(client_v: int, box_v: int = PROTOCOL_VERSION) -> int:
    """Both ends speak the lower of the two versions."""
    return min(client_v, box_v)

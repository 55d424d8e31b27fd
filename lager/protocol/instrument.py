"""The `nets` subsystem's request: one InstrumentRequest line (`lager nets`, `lager supply ...`).

Apart from the run channel's messages (lager.protocol.channel, which still exports it) because
`lager nets` and the instrument commands from a second terminal go through the connection
keeper, whose path loads only the classes it uses (issue 13).
"""
from __future__ import annotations

from .codec import Message, message

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@message
class InstrumentRequest(Message):
    """`nets`: a command on one net, or {"command": "nets"} for the list. A word travels apart
    from "value" because value admits only numbers."""

    WHAT = "nets request"
    command: str | None = None
    net: str | None = None
    action: str | None = None
    value: float | None = None
    word: str | None = None
    options: dict[str, Any] | None = None
    v: int = 1  # a request without v is version 1; ours set PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        # Only what is set, as the box has always been sent it (`lager nets` is one key).
        return {k: v for k, v in super().to_dict().items() if v is not None}

    @classmethod
    def ours(cls, **fields: Any) -> str:
        """The request line this client sends (with its version)."""
        from .version import PROTOCOL_VERSION

        return cls(**fields, v=PROTOCOL_VERSION).as_line()

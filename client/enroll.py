"""`lager boxes add`: check the key, reach the box once, pin what it showed, then log in.

`--host H [--port P] [--user U]` defines a box by address, `--ssh HOST` by an ssh_config Host
(or `[user@]host[:port]`), which is then read afresh at each use. Nothing is saved until the
key is known to be usable (a passphrase-protected key with no terminal and no ssh-agent copy
fails first, in one line) and the box's host key has been seen. Jump hosts on the way whose
keys neither lager nor the user's known_hosts know are pinned in lager's file (trust on first
use, printed), as is the box's own key; a box vouched for by a host certificate needs no pin.
The click command (client/commands/boxes.py) only parses options and calls `add_box`.
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lager import protocol
from lager.errors import AuthFailed, HostKeyChanged, UsageError

from .config import Box, Config, valid_name
from .known_hosts import HostKeyPolicy, Presented, Verdict, fingerprint, key_changed


class FirstUse(HostKeyPolicy):
    """Accepts (and remembers) keys nobody knows yet, and changed pins in lager's own file when
    re-pinning; a key the user's own known_hosts contradicts is never overridden here."""

    def __init__(self, config: Config, target: Box, repin: bool) -> None:
        super().__init__(config, target)
        self.repin = repin
        self.pins: list[tuple[Box, Presented]] = []
        self.vouched: str | None = None  # the box's host certificate, when one vouched for it

    def check(self, node: Box, transport: Any) -> Verdict:
        verdict = super().check(node, transport)
        if node is self.target and verdict.status == Verdict.TRUSTED:
            # The box's own key is pinned in lager's file even when the user's known_hosts
            # knows it (the contract of `boxes add`), unless a CA vouches for it.
            if verdict.via_ca:
                self.vouched = verdict.detail
            elif not any(n is node for n, _ in self.pins):
                key = transport.get_remote_server_key()
                self.pins.append((node, Presented(key.get_name(), key.asbytes())))
        return verdict

    def refuse(self, node: Box, shown: Presented, verdict: Verdict) -> None:
        ours = verdict.entry is not None and verdict.entry.path == self.config.known_hosts_path
        if verdict.status == Verdict.UNKNOWN or \
                (verdict.status == Verdict.CHANGED and ours and self.repin):
            self.pins.append((node, shown))
            return
        if verdict.status == Verdict.CHANGED and ours:
            raise HostKeyChanged(key_changed(node.label, fingerprint(shown.blob),
                                             "run this again with --repin"))
        super().refuse(node, shown, verdict)


def add_box(config: Config, name: str, *, host: str | None = None, ssh: str | None = None,
            port: int | None = None, user: str | None = None, identity: str | None = None,
            connect_timeout: float | None = None, repin: bool = False,
            echo: Callable[[str], None] = print) -> Box:
    """Define box NAME, pin its host key (and unknown jump hosts'), check that our key is
    authorized. Raises (exit 2 or 255) before saving anything when it cannot get that far.
    port and user are None when not given: protocol.DEFAULT_PORT and `lager` for --host; with
    --ssh they come from ssh_config or the target itself (USER@HOST:PORT)."""
    from .ssh import BoxConnection

    if not valid_name(name):
        raise UsageError(f"box name {name!r} must be letters, digits, '.', '_' or '-'")
    if bool(host) == bool(ssh):
        raise UsageError("give the box's address (--host HOST) or an ssh_config Host "
                         "(--ssh HOST), one of the two")
    if ssh and (port is not None or user is not None):
        raise UsageError("with --ssh the user and port come from ssh_config, or write them in "
                         "the target: --ssh USER@HOST:PORT")
    box = Box(name=name, host=host or "", port=port or protocol.DEFAULT_PORT, user=user or "lager",
              identity=identity, connect_timeout=connect_timeout)
    if ssh:
        from .sshconfig import resolve

        box, _ = resolve(ssh)
        box.name, box.identity, box.connect_timeout = name, identity, connect_timeout
    if identity is not None:
        from .identities import check_identity

        check_identity(Path(identity).expanduser(), box)
    elif not box.identities:
        _, _, created = config.ensure_default_key()
        if created:
            echo(f"created lager's key {config.default_key_path}")
    policy = FirstUse(config, box, repin)
    with BoxConnection(config, box, policy=policy, login=False) as conn:
        # Stored: what the command line said. ssh_config is read afresh at each use.
        config.add_box(Box(name=name, host=box.host, port=box.port, user=box.user,
                           identity=identity, connect_timeout=connect_timeout, ssh=ssh))
        for node, shown in policy.pins:
            config.pin(node, shown.key_type, base64.b64encode(shown.blob).decode())
            what = "" if node is box else "jump host "
            echo(f"pinned host key of {what}{node.name} ({node.host}:{node.port}): "
                 f"{fingerprint(shown.blob)}")
        if policy.vouched is not None:
            echo(f"{box.label}: {policy.vouched}; nothing to pin")
        try:
            conn.login()
        except AuthFailed as exc:
            echo(f"this key is not a box key yet: {exc}")
            return box
        echo(f"authenticated as {box.user}: box {name} is ready")
    return box

"""The keys lager offers a box or a jump host, in order, as ssh would choose them.

First the configured key: `--identity` or ssh_config IdentityFile, else lager's own key (for a
jump host: ~/.ssh's usual keys). A key with a certificate beside it (`KEY-cert.pub`, or
CertificateFile) is offered as the certificate first, then plain. Then the ssh-agent's keys,
unless IdentitiesOnly. An encrypted key the agent holds is used through the agent; otherwise its
passphrase is asked for on a terminal, and without one the key is set aside and the failure
says so in one line (paramiko 5 raises TypeError there, not PasswordRequiredException).
"""
from __future__ import annotations

import base64
import binascii
import copy
import getpass
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lager.errors import AuthFailed

from .config import Box, Config
from .records import record

PASSPHRASE_TRIES = 3
_OPENSSH_MAGIC = b"openssh-key-v1\0"


@record
class Offer:
    key: Any  # a paramiko PKey or AgentKey
    what: str  # how the failure line names it
    blob: bytes  # the public blob the server sees (the certificate's, for one)

    @property
    def public_line(self) -> str:
        plain = self.key.asbytes()
        return f"{self.key.get_name().replace('-cert-v01@openssh.com', '')} " \
               f"{base64.b64encode(plain).decode()}"


def _needs_passphrase(exc: TypeError) -> bool:
    text = str(exc).lower()
    return "password" in text and ("encrypted" in text or "protected" in text)


def public_blob(path: Path) -> bytes | None:
    """The public half of a private key file without decrypting it: KEY.pub, or the clear
    public section of the OpenSSH format."""
    pub = path.with_name(path.name + ".pub")
    try:
        return base64.b64decode(pub.read_text().split()[1])
    except (OSError, IndexError, binascii.Error, ValueError):
        pass
    try:
        text = path.read_text()
        body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        data = base64.b64decode(body)
    except (OSError, binascii.Error, ValueError):
        return None
    if not data.startswith(_OPENSSH_MAGIC):
        return None
    at = len(_OPENSSH_MAGIC)
    try:
        for _ in range(3):  # cipher, kdf, kdf options
            at += 4 + struct.unpack(">I", data[at:at + 4])[0]
        at += 4  # number of keys
        size = struct.unpack(">I", data[at:at + 4])[0]
        return data[at + 4:at + 4 + size]
    except struct.error:
        return None


def can_prompt(box: Box) -> bool:
    return not box.batch and sys.stdin.isatty()


def load_key(path: Path, box: Box, explicit: bool,
             waited: Callable[[float], None] | None = None) -> Any | None:
    """The decrypted key, or None when it needs a passphrase no one can type here. The time a
    passphrase took (typing it, and its KDF) goes to `waited`: it is not the box's delay."""
    from .ssh import _paramiko

    paramiko = _paramiko()
    password: bytes | None = None
    started = time.monotonic()
    for attempt in range(PASSPHRASE_TRIES + 1):
        try:
            key = paramiko.pkey.PKey.from_path(str(path), password)
            if password is not None and waited is not None:
                waited(time.monotonic() - started)
            return key
        except FileNotFoundError:
            if explicit:
                raise AuthFailed(f"identity file {path} does not exist") from None
            return None
        except TypeError as exc:
            if not _needs_passphrase(exc):
                raise AuthFailed(f"cannot read identity {path}: {exc}") from None
        except ValueError as exc:
            if password is None:
                raise AuthFailed(f"cannot read identity {path}: {exc}") from None
            if attempt == PASSPHRASE_TRIES:
                raise AuthFailed(f"wrong passphrase for {path}") from None
        except (paramiko.ssh_exception.SSHException, paramiko.pkey.UnknownKeyType, OSError) as exc:
            raise AuthFailed(f"cannot read identity {path}: {exc}") from None
        if not can_prompt(box):
            return None
        password = getpass.getpass(f"Enter passphrase for key '{path}': ").encode()
    return None


def check_identity(path: Path, box: Box) -> None:
    """For `lager boxes add --identity`: the key is usable, before anything is saved."""
    if load_key(path, box, explicit=True) is not None:
        return
    blob = public_blob(path)
    if blob is not None and blob in _agent_blobs():
        return
    raise AuthFailed(f"identity {path} is passphrase-protected and there is no terminal to ask "
                     f"for it: add it to ssh-agent (`ssh-add {path}`) or run this in a terminal")


def _agent_blobs() -> set[bytes]:
    from .ssh import _paramiko

    _paramiko()
    from paramiko.agent import Agent

    agent = Agent()
    try:
        return {k.asbytes() for k in agent.get_keys()} | {k.blob for k in agent.get_keys()}
    finally:
        agent.close()


class Identities:
    """The offers for one login; files are read (and passphrases asked) only when reached, and
    the ssh-agent asked for its keys only when an offer needs them."""

    def __init__(self, config: Config, box: Box,
                 waited: Callable[[float], None] | None = None) -> None:
        from .ssh import _paramiko

        self.config = config
        self.box = box
        self.waited = waited
        self.paramiko = _paramiko()
        self.locked: list[Path] = []  # needed a passphrase with no terminal to ask
        self.missing: list[Path] = []
        self.agent: Any = None
        self._agent_keys: list[Any] | None = None

    @property
    def agent_keys(self) -> list[Any]:
        """The ssh-agent's keys, asked for the first time they are needed (after the files'
        keys, or for a file's locked key): a run whose key file is accepted never loads
        paramiko.agent (with tempfile and shutil) nor talks to the agent, ~3 ms of its start
        before the first byte (issue 13)."""
        if self._agent_keys is None:
            self._agent_keys = []
            if self.box.use_agent:
                from paramiko.agent import Agent
                from paramiko.pkey import PublicBlob

                self.agent = Agent()
                self._agent_keys = list(self.agent.get_keys())
                for key in self._agent_keys:
                    if key.get_name().endswith("-cert-v01@openssh.com"):
                        # paramiko sends an agent certificate as its bare key unless told.
                        key.public_blob = PublicBlob(key.get_name(), key.blob)
        return self._agent_keys

    def files(self) -> list[tuple[Path, bool]]:
        """(path, explicit): explicit ones must exist."""
        box = self.box
        if box.identity:
            return [(Path(box.identity).expanduser(), True)]
        if box.identities:
            return [(Path(p), False) for p in box.identities]
        if box.hop:
            from .sshconfig import default_identities

            return [(p, False) for p in default_identities()]
        return [(self.config.default_key_path, False)]

    def _from_file(self, path: Path, explicit: bool) -> Iterator[Offer]:
        key = load_key(path, self.box, explicit, self.waited)
        if key is None:
            blob = public_blob(path) if path.exists() else None
            if not path.exists():
                self.missing.append(path)
                return
            agent_copy = next((k for k in self.agent_keys if k.asbytes() == blob), None)
            if agent_copy is None:
                self.locked.append(path)
                return
            yield Offer(agent_copy, f"{path} (through ssh-agent)", agent_copy.blob)
            return
        if self.box.certificate:
            try:
                key.load_certificate(self.box.certificate)
            except (OSError, ValueError, self.paramiko.ssh_exception.SSHException) as exc:
                raise AuthFailed(f"cannot read certificate {self.box.certificate}: {exc}") \
                    from None
        if key.public_blob is not None:
            cert_path = self.box.certificate or f"{path}-cert.pub"
            yield Offer(key, f"certificate {cert_path}", key.public_blob.key_blob)
            key = copy.copy(key)
            key.public_blob = None
        yield Offer(key, str(path), key.asbytes())

    def offers(self) -> Iterator[Offer]:
        offered: set[bytes] = set()
        for path, explicit in self.files():
            for offer in self._from_file(path, explicit):
                if offer.blob not in offered:
                    offered.add(offer.blob)
                    yield offer
        if self.box.identities_only:
            return
        from .ssh import fingerprint

        for key in self.agent_keys:
            if key.blob in offered:
                continue
            offered.add(key.blob)
            name = "agent certificate" if key.public_blob is not None else "agent key"
            yield Offer(key, f"{name} {fingerprint(key.asbytes())}"
                        + (f" ({key.comment})" if getattr(key, "comment", "") else ""), key.blob)

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()

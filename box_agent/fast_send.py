"""A lean send path for a connection's bulk channel data, under AES-GCM.

asyncssh builds each packet it sends with about six whole copies of the payload (the message
type, the padding and the MAC each concatenated on), makes a new AES-GCM context per packet,
and puts an SSH_MSG_IGNORE packet before every one: a second packet, encryption and send(2)
for each 256 KiB of a run's output. The ignore packet is a countermeasure for CBC modes (it
randomizes the next block's IV); a GCM packet has its own nonce and gains nothing from it, and
OpenSSH never sends one. Issue 13's profile of a 200 MB stream put those copies at a fifth of
the agent's CPU (memmove), ahead of the encryption itself.

`speed_up(conn)` replaces the connection's `send_packet` (on that instance only) with one that
sends a large SSH_MSG_CHANNEL_DATA packet as: the plaintext gathered once into a kept buffer
(a run log's long records read from disk straight into it, box_agent/file_bytes.py), encrypted
straight into the buffer that goes to the socket, one write. It keeps asyncssh's bookkeeping
(sequence number, rekey byte count, the rekey trigger). Anything else (other messages, small
packets, a key exchange pending or in progress, another cipher, compression, an asyncssh whose
insides differ) goes through asyncssh's own send_packet unchanged.
"""
from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from .file_bytes import Data, FileBytes

MSG_CHANNEL_DATA = 94
# Below this a packet's copies cost less than the checks: asyncssh's path as it is.
MIN_FAST_PAYLOAD = 16 * 1024
_GCM_TAG = 16
_LENGTH = struct.Struct(">I")
_DATA_HEAD = struct.Struct(">II")  # the recipient channel and the data's length
_AESGCM_ALGS = (b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com")


class _GcmSender:
    """The AES-GCM context of one set of send keys (a rekey brings a new asyncssh cipher),
    and the buffers its packets are built in."""

    def __init__(self, cipher: Any) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.cipher = cipher  # asyncssh's GCMCipher: its IV stays the one that counts
        self.aead = AESGCM(cipher._key)
        self._plain = bytearray()
        self._packet = bytearray()

    def plain_buffer(self, size: int) -> memoryview:
        """Where a packet's plaintext is gathered: one buffer, kept from packet to packet (it
        never leaves _send_gcm), instead of a new bytes object of a packet's size each time."""
        if len(self._plain) < size:
            self._plain = bytearray(size)
        return memoryview(self._plain)[:size]

    def packet_buffer(self, size: int) -> memoryview:
        """Where a packet is encrypted into: the last one's buffer again, unless the transport
        may still hold it (see sent); a new buffer is zeroed in full, a packet's worth of
        memset for nothing."""
        if len(self._packet) < size:
            self._packet = bytearray(size)
        return memoryview(self._packet)[:size]

    def sent(self, transport: Any) -> None:
        """After the transport took a packet: what it did not send at once it keeps (asyncio
        copies it, or, in later Pythons, keeps a view of it), so that buffer is left to it and
        the next packet gets a new one."""
        if transport.get_write_buffer_size():
            self._packet = bytearray()


def speed_up(conn: Any) -> None:
    """Give this asyncssh connection the lean send path for bulk channel data."""
    original: Callable[..., None] = conn.send_packet
    needed = ("_send_encryption", "_send_seq", "_rekey_bytes_sent", "_rekey_bytes",
              "_rekey_seconds", "_rekey_time", "_kex_complete", "_auth_complete",
              "_compressor", "_transport", "_send_enchdrlen", "_send_blocksize")
    if not all(hasattr(conn, name) for name in needed):
        return  # an asyncssh this was not written against: its own path, unchanged
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not hasattr(AESGCM, "encrypt_into"):
        return  # an older cryptography, without encrypt_into: asyncssh's path, unchanged
    state: dict[str, _GcmSender | None] = {"sender": None}

    def sender() -> _GcmSender | None:
        encryption = conn._send_encryption
        cipher = getattr(encryption, "_cipher", None)
        if type(encryption).__name__ != "GCMEncryption" or cipher is None or \
                not hasattr(cipher, "_iv") or not hasattr(cipher, "_update_iv"):
            return None
        current = state["sender"]
        if current is None or current.cipher is not cipher:
            current = state["sender"] = _GcmSender(cipher)
        return current

    def ready() -> _GcmSender | None:
        """The AES-GCM sender when a data packet may take the lean path now."""
        if not (conn._kex_complete and conn._auth_complete) or conn._compressor \
                or conn._transport is None or _rekey_due(conn):
            return None
        return sender()

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        gcm = ready() if pkttype == MSG_CHANNEL_DATA and len(args) == 1 and \
            len(args[0]) >= MIN_FAST_PAYLOAD else None
        if gcm is None:
            original(pkttype, *args, handler=handler)
            return
        _send_gcm(conn, gcm, b"", (args[0],))

    def send_data(recipient: int, parts: Sequence[Data], size: int) -> bool:
        gcm = ready()
        if gcm is None:
            return False
        _send_gcm(conn, gcm, _DATA_HEAD.pack(recipient, size), parts)
        return True

    conn.send_packet = send_packet
    conn.lager_send_data = send_data


def packet_room(channel: Any, most: int) -> int:
    """The most data one packet to this channel's peer may carry, `most` at most: what a
    channel's writer cuts its packets to, so that each goes whole (send_now)."""
    try:
        return max(1, min(most, int(channel._send_pktsize)))
    except (AttributeError, TypeError, ValueError):  # an asyncssh this was not written against
        return most


def send_now(channel: Any, parts: Sequence[Data]) -> bool:
    """Send `parts`, joined, on this channel as one SSH_MSG_CHANNEL_DATA packet now, past
    asyncssh's channel buffer (which copies what it is given twice more), when asyncssh would
    send it at once anyway: nothing queued before it, the window and the peer's packet size
    take it whole, and its connection has the lean path (speed_up). False: nothing was sent,
    write it the usual way. The window is counted as asyncssh counts it, so the client's
    window still bounds what is in flight. The parts are joined once, into the plaintext that
    is encrypted (a record's header and the start of its data need no join of their own)."""
    send_data = getattr(getattr(channel, "_conn", None), "lager_send_data", None)
    size = sum(len(part) for part in parts)
    if send_data is None or size < MIN_FAST_PAYLOAD:
        return False
    try:
        if channel._send_buf or channel._send_state != "open" or channel._send_chan is None \
                or size > channel._send_window or size > channel._send_pktsize:
            return False
    except AttributeError:  # an asyncssh this was not written against
        return False
    if not send_data(channel._send_chan, parts, size):
        return False
    channel._send_window -= size
    return True


def _rekey_due(conn: Any) -> bool:
    return bool(conn._rekey_bytes_sent >= conn._rekey_bytes or
                (conn._rekey_seconds and time.monotonic() >= conn._rekey_time))


def _send_gcm(conn: Any, gcm: _GcmSender, head: bytes, payload: Sequence[Data]) -> None:
    """One SSH_MSG_CHANNEL_DATA packet: [length][padlen, type, head, payload, padding]
    encrypted, the tag after it (RFC 5647 as OpenSSH does it: the length is the associated
    data). The plaintext is gathered once, into a buffer kept for the next packet, and
    encrypted straight into the packet that goes to the socket: the message's pieces (a
    record's header and data, or a packet's share of two records) need no join of their own."""
    size = len(head) + sum(len(part) for part in payload)
    padlen = -(conn._send_enchdrlen + size + 1) % conn._send_blocksize  # + the message type
    if padlen < 4:
        padlen += conn._send_blocksize
    length = size + 2 + padlen  # the padding length, the type, the message, the padding
    plain = gcm.plain_buffer(length)
    at = 2 + len(head)
    plain[:at] = bytes((padlen, MSG_CHANNEL_DATA)) + head
    for part in payload:
        if isinstance(part, FileBytes):
            part.read_into(plain[at:at + len(part)])  # from the log straight into place
        else:
            plain[at:at + len(part)] = part
        at += len(part)
    plain[at:] = os.urandom(padlen)
    header = _LENGTH.pack(length)
    # A view: what the socket does not take at once is sliced off it without a copy.
    packet = gcm.packet_buffer(_LENGTH.size + length + _GCM_TAG)
    packet[:_LENGTH.size] = header
    cipher = gcm.cipher
    gcm.aead.encrypt_into(cipher._iv, plain, header, packet[_LENGTH.size:])
    cipher._update_iv()
    try:
        conn._transport.write(packet)
    except ConnectionError:
        pass  # as asyncssh's _send: the connection's loss reaches it through the protocol
    gcm.sent(conn._transport)
    conn._send_seq = (conn._send_seq + 1) & 0xffffffff
    conn._rekey_bytes_sent += length

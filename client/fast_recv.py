"""A lean receive path for a paramiko transport's packets, under AES-GCM.

paramiko reads a packet as: recv the first block, recv the rest (each recv polls first, since
its socket has a timeout), joining the pieces with `out += x` (a whole copy per piece: a
256 KiB packet arriving in 16 KiB pieces is copied about eight times), then concatenates the
block and the rest, decrypts, slices the payload twice, and the channel slices the data out of
the Message once more. Issue 13's profile of a 200 MB stream put memmove at a third of the
client's transport thread.

`install(transport)` gives the transport's Packetizer a `read_message` that reads the socket
into one large buffer with readv/recv_into (several packets per syscall when they are queued,
no poll while data is there), decrypts each AES-GCM packet straight from that buffer, and
hands an SSH_MSG_CHANNEL_DATA packet's data on as one slice of the plaintext (the channel
buffers of client/chan_buffer.py keep it as it is). It keeps paramiko's bookkeeping (the
sequence number, the IV, the rekey byte and packet counts and the rekey trigger). Anything
else goes through paramiko's own read_message, with what the buffer holds handed back to it
first (its banner remainder): before the first NEWKEYS, other ciphers, compression, packet
dumps, a rekey paramiko asked for, a socket that is not a plain socket, a paramiko whose
insides differ. LAGER_FAST_RECV=0 turns it off (for A/B measurements).

The packetizer's private attributes are reached by their mangled names; `install` checks that
each exists first and leaves paramiko alone otherwise.

It also batches the channels' wakeups (client/chan_buffer.py WakeBatch): channel data it reads
is fed to its channel without waking the reader, and the readers are woken once for all of it
before this thread waits on the socket (or once a MiB is waiting), not once per packet.
"""
from __future__ import annotations

import errno
import functools
import os
import socket
import struct
from typing import Any

from . import chan_buffer
from .plain_pool import SMALLEST, PlainPool
from .read_buffer import BUFFER_SIZE, ReadBuffer

MSG_CHANNEL_DATA = 94
_TAG = 16
_LENGTH = struct.Struct(">I")
_DATA_HEAD = struct.Struct(">II")  # recipient channel, data length
_P = "_Packetizer__"
_NEEDED = (*(_P + name for name in (
    "socket", "remainder", "aead_in", "block_engine_in", "iv_in", "compress_engine_in",
    "dump_packets", "need_rekey", "sequence_number_in", "received_bytes", "received_packets",
    "received_bytes_overflow", "received_packets_overflow", "closed", "mac_size_in")),
    "_inc_iv_counter", "_trigger_rekey", "_check_keepalive", "handshake_timed_out", "_log",
    "read_message", "REKEY_BYTES", "REKEY_PACKETS")


def install(transport: Any) -> None:
    """Give this paramiko transport's packetizer the lean receive path (see the module)."""
    if os.environ.get("LAGER_FAST_RECV") == "0":
        return
    packetizer = getattr(transport, "packetizer", None)
    if packetizer is None or not all(hasattr(packetizer, n) for n in _NEEDED) or \
            not hasattr(transport, "_get_engine") or not hasattr(transport, "_DECRYPT"):
        return  # a paramiko this was not written against: its own path, unchanged
    try:
        from paramiko.message import Message
    except ImportError:
        return
    reader = GcmReader(transport, packetizer, Message)
    transport.lager_fast_recv = reader
    channels: Any = getattr(transport, "_channels", None)
    if hasattr(channels, "wake_batch"):  # lager's packet-queue channel buffers
        reader.batch = channels.wake_batch = chan_buffer.WakeBatch()
    get_engine = transport._get_engine

    def engine_with_key(name: str, key: bytes, iv: Any = None, operation: Any = None,
                        aead: bool = False) -> Any:
        engine = get_engine(name=name, key=key, iv=iv, operation=operation, aead=aead)
        if aead and operation == transport._DECRYPT:
            reader.inbound_keys(engine)
        return engine

    transport._get_engine = engine_with_key
    packetizer.read_message = reader.read_message


class GcmReader(ReadBuffer):
    """One transport's receive buffer and its AES-GCM packet reader."""

    def __init__(self, transport: Any, packetizer: Any, message_class: Any,
                 buffer_size: int = BUFFER_SIZE) -> None:
        self.packetizer = packetizer
        self.original = packetizer.read_message
        self.message_class = message_class
        self.engine: Any = None  # the AESGCM paramiko decrypts with (what we decrypt with too)
        super().__init__(buffer_size)
        self.plain = bytearray(buffer_size)  # a packet's plaintext (decrypt_into)
        self.plain_view = memoryview(self.plain)
        self.into = False  # cryptography has AESGCM.decrypt_into (45 and later)
        # Counts for tests and measurements: packets each path read, inbound key sets seen,
        # and the key sets the lean path read packets under (it takes up again after a rekey).
        self.fast_packets = self.other_packets = self.key_sets = self.fast_key_sets = 0
        self._counted_engine: Any = None
        self.batch: chan_buffer.WakeBatch | None = None  # set by install with lager's buffers
        self.channels: Any = getattr(transport, "_channels", None)
        self.pool = PlainPool()  # plaintext buffers for readers that take views
        from cryptography.exceptions import InvalidTag

        self.invalid_tag = InvalidTag

    def inbound_keys(self, engine: Any) -> None:
        self.engine = engine
        self.into = hasattr(engine, "decrypt_into")
        self.key_sets += 1

    # -- the packets ------------------------------------------------------------------------

    def read_message(self) -> tuple[int, Any]:
        p = self.packetizer
        sock = getattr(p, _P + "socket")
        if not self._fast_now(p, sock):
            return self._paramiko_reads(p)
        if self.end - self.start < 4 and not self._fill(sock, 4, packet_start=True):
            return self._paramiko_reads(p)  # a rekey began while waiting for the packet
        packet_size = _LENGTH.unpack_from(self.buffer, self.start)[0]
        if packet_size < 16 or packet_size > (64 << 20):
            return self._paramiko_reads(p)  # paramiko says what is wrong with it
        total = 4 + packet_size + _TAG
        if self.end - self.start < total:
            self._fill(sock, total, packet_start=False)
        packet = self.view[self.start:self.start + total]
        iv = getattr(p, _P + "iv_in")
        try:
            plain = self._decrypt(iv, packet, packet_size)
        except self.invalid_tag:  # a tampered or garbled packet (paramiko lets InvalidTag out)
            from paramiko.ssh_exception import SSHException

            raise SSHException("Mismatched MAC") from None
        finally:
            packet.release()
        self.start += total
        if self.start == self.end:
            self.start = self.end = 0
        setattr(p, _P + "iv_in", p._inc_iv_counter(iv))
        self.fast_packets += 1
        if self._counted_engine is not self.engine:
            self._counted_engine = self.engine
            self.fast_key_sets += 1
        if self.batch is not None:
            self.batch.deferring = True  # its data's reader is woken by _wait's flush
        return self._message(p, plain, packet_size)

    def _decrypt(self, iv: bytes, packet: memoryview, packet_size: int) -> Any:
        """The plaintext: into the reused plaintext buffer when cryptography can
        (decrypt_into). A new 256 KiB bytes per packet, sliced again for its data, made glibc
        give the heap's top back and fault it in again each packet: ~8x the decryption's
        cost in a measurement here."""
        if not self.into:
            return self.engine.decrypt(iv, packet[4:], packet[:4])
        if packet_size >= SMALLEST and self.batch is not None and self.batch.views_wanted:
            # A pool buffer: a reader that takes views gets its data as a view of it, no copy.
            into = memoryview(self.pool.take(packet_size))[:packet_size]
            self.engine.decrypt_into(iv, packet[4:], packet[:4], into)
            return into
        if packet_size > len(self.plain):
            self.plain_view.release()
            self.plain = bytearray(packet_size + len(self.buffer))
            self.plain_view = memoryview(self.plain)
        out = self.plain_view[:packet_size]
        self.engine.decrypt_into(iv, packet[4:], packet[:4], out)
        return out

    def _viewable(self, plain: Any) -> bool:
        """Whether views of `plain` may be handed on: new bytes, or a pool buffer (not the
        reused plaintext buffer, which the next packet overwrites)."""
        return isinstance(plain, bytes) or \
            (isinstance(plain, memoryview) and plain.obj is not self.plain)

    def _takes_views(self, chanid: int) -> bool:
        chan = self.channels.get(chanid) if self.channels is not None else None
        return chan is not None and getattr(chan.in_buffer, "takes_views", False) is True

    def _fast_now(self, p: Any, sock: Any) -> bool:
        return bool(getattr(p, _P + "aead_in")) and self.engine is not None and \
            getattr(p, _P + "block_engine_in") is self.engine and \
            getattr(p, _P + "compress_engine_in") is None and \
            not getattr(p, _P + "dump_packets") and not getattr(p, _P + "need_rekey") and \
            not getattr(p, _P + "remainder") and type(sock) is socket.socket and \
            bool(sock.gettimeout())

    def _paramiko_reads(self, p: Any) -> tuple[int, Any]:
        self._wake_readers()  # paramiko's path may wait on the socket, and wakes per packet
        if self.batch is not None:
            self.batch.deferring = False
        if self.end > self.start:  # read ahead: paramiko's read_all takes its remainder first
            held = bytes(self.view[self.start:self.end])
            setattr(p, _P + "remainder", held + getattr(p, _P + "remainder"))
            self.start = self.end = 0
        self.other_packets += 1
        return self.original()  # type: ignore[no-any-return]

    def _message(self, p: Any, plain: Any, packet_size: int) -> tuple[int, Any]:
        """paramiko's steps after the decryption, in its order: the payload, the sequence
        number, the rekey counts, then the message. `plain`: bytes, or a memoryview of the
        reused plaintext buffer (each piece taken from it is copied out as bytes) or of a pool
        buffer (a channel that takes views gets its data as a view of it)."""
        padding = plain[0]
        payload_end = packet_size - padding
        if payload_end < 2:
            from paramiko.ssh_exception import SSHException

            raise SSHException("Invalid packet padding")
        cmd = plain[1]
        msg = None
        if cmd == MSG_CHANNEL_DATA and payload_end >= 10:
            chanid, length = _DATA_HEAD.unpack_from(plain, 2)
            if 10 + length <= payload_end:  # else paramiko's Message says what is wrong
                data: bytes | memoryview
                if self._viewable(plain) and self._takes_views(chanid):
                    data = plain[10:10 + length].toreadonly()
                else:
                    data = bytes(plain[10:10 + length])
                msg = channel_data_message(self.message_class, bytes(plain[2:10]), data)
        if msg is None:
            msg = self.message_class(bytes(plain[2:payload_end]))
        seq = getattr(p, _P + "sequence_number_in")
        msg.seqno = seq
        next_seq = (seq + 1) & 0xFFFFFFFF
        if next_seq == 0 and not getattr(p, "_initial_kex_done", True):
            from paramiko.ssh_exception import SSHException

            raise SSHException("Sequence number rolled over during initial kex!")
        setattr(p, _P + "sequence_number_in", next_seq)
        received_bytes = getattr(p, _P + "received_bytes") + packet_size + _TAG + 4
        received_packets = getattr(p, _P + "received_packets") + 1
        setattr(p, _P + "received_bytes", received_bytes)
        setattr(p, _P + "received_packets", received_packets)
        # need_rekey is false here (else paramiko's path, which counts the overflow)
        if received_packets >= p.REKEY_PACKETS or received_bytes >= p.REKEY_BYTES:
            from paramiko.common import DEBUG

            p._log(DEBUG, f"Rekeying (hit {received_packets} packets, {received_bytes} "
                          "bytes received)")
            setattr(p, _P + "received_bytes_overflow", 0)
            setattr(p, _P + "received_packets_overflow", 0)
            p._trigger_rekey()
        return cmd, msg

    # -- the socket -------------------------------------------------------------------------

    def _fill(self, sock: Any, need: int, packet_start: bool) -> bool:
        """Read until `need` unread bytes are buffered. False: nothing of a packet was there
        and a rekey is pending (paramiko's NeedRekeyException case: its path takes over)."""
        if self.start + need > len(self.buffer):
            self.make_room(need)
        while self.end - self.start < need:
            got = self._recv(sock, self.view[self.end:])
            if got is None:
                if packet_start and self.end == self.start and \
                        getattr(self.packetizer, _P + "need_rekey"):
                    return False
                continue
            self.end += got
        return True

    def _recv(self, sock: Any, into: memoryview) -> int | None:
        """Bytes read into `into`; None: none within the socket's timeout (paramiko's checks
        ran). readv first: a socket with a timeout polls before every recv, needless while
        data is queued."""
        p = self.packetizer
        if p.handshake_timed_out():
            raise EOFError()
        try:
            got = os.readv(sock.fileno(), [into])
        except BlockingIOError:
            self._wake_readers()  # nothing queued: this thread is about to wait
            try:
                got = sock.recv_into(into)
            except (TimeoutError, BlockingIOError):
                if getattr(p, _P + "closed"):
                    raise EOFError() from None
                p._check_keepalive()
                return None
            except OSError as exc:
                self._failed(exc)
                return None
        except OSError as exc:
            self._failed(exc)
            return None
        if got == 0:
            raise EOFError()
        return got

    def _wake_readers(self) -> None:
        if self.batch is not None and self.batch.pending:
            self.batch.flush()

    def _failed(self, exc: OSError) -> None:
        """paramiko's read_all on a socket error: EAGAIN is a timeout, else EOF if closed."""
        if exc.errno == errno.EAGAIN:
            return
        if getattr(self.packetizer, _P + "closed"):
            raise EOFError() from None
        raise exc


def channel_data_message(message_class: Any, head: bytes, data: bytes | memoryview) -> Any:
    """A paramiko Message for SSH_MSG_CHANNEL_DATA whose data is `data` as it is: the
    transport reads the channel number (get_int), the channel its data (get_binary)."""
    msg = _data_message_class(message_class)(head)
    msg.lager_data = data
    return msg


@functools.cache
def _data_message_class(message_class: Any) -> Any:
    class DataMessage(message_class):  # type: ignore[misc, valid-type]
        """get_binary hands over the data once and keeps no reference to it. (A closure set
        on the message referred back to it: a cycle that only the garbage collector broke,
        so a packet's buffer stayed in use long after its data was written, plain_pool.py.)"""

        lager_data: bytes | memoryview | None = None

        def get_binary(self) -> Any:
            data, self.lager_data = self.lager_data, None
            if data is None:
                return super().get_binary()
            self.get_int()  # the length field, as get_binary reads it
            return data

    return DataMessage

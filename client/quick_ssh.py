"""A small SSH client for the calls that must start fast: short requests and the console.

`lager python --continue` with no keeper used to be mostly Python importing paramiko (and click)
plus a handshake of seven round trips. This client speaks the one set of algorithms a lager box
offers and lager's own key uses: curve25519-sha256, an ssh-ed25519 host key checked against
lager's pin, aes128-gcm@openssh.com, and an unencrypted ed25519 user key. It imports only the
three primitives it needs from `cryptography`, and it sends each flight of messages without
waiting for answers it does not need:

  1. TCP connect
  2. version, KEXINIT and the key-exchange guess (first_kex_packet_follows), all at once
  3. NEWKEYS, the auth request with its signature, and the channel open
  4. the channel's requests, its data and our EOF (client/quick_channel.py)

OpenSSH takes about eight round trips for the same `ssh -s` call.

Anything it does not handle (another host key type, a changed or missing pin, a refused key, an
encrypted key, ProxyJump...) raises Unsupported before any channel request is sent, and the
caller takes the full paramiko path, which does the same thing or says precisely why it can't.
"""
from __future__ import annotations

import os
import socket
import struct
import threading

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lager import protocol

from .builtin_sha256 import sha256  # not hashlib: OpenSSL's load costs ~3 ms (issue 13)
from .ssh_wire import (
    DEBUG,
    DISCONNECT,
    EXT_INFO,
    IGNORE,
    KEX_ECDH_INIT,
    KEX_ECDH_REPLY,
    KEXINIT,
    NEWKEYS,
    REQUEST_FAILURE,
    SERVICE_ACCEPT,
    SERVICE_REQUEST,
    UNIMPLEMENTED,
    USERAUTH_BANNER,
    USERAUTH_FAILURE,
    USERAUTH_REQUEST,
    USERAUTH_SUCCESS,
    Lost,
    Reader,
    Unreachable,
    Unsupported,
    mpint,
    printable,
    string,
    u32,
)

TYPE_CHECKING = False  # not typing's: this client starts without it where it can (issue 13)
if TYPE_CHECKING:
    from typing import Any

VERSION = b"SSH-2.0-lager_quick_1"
KEX = b"curve25519-sha256"
HOST_KEY = b"ssh-ed25519"
CIPHER = b"aes128-gcm@openssh.com"
STRICT_C, STRICT_S = b"kex-strict-c-v00@openssh.com", b"kex-strict-s-v00@openssh.com"
MAX_BEFORE_VERSION = 8192  # other lines a server may send before its version (RFC 4253 4.2)
# AsyncSSH (the lager agent) uses a client's guessed key-exchange packet whenever the method
# negotiated is the client's first choice; RFC 4253 7 (and OpenSSH) only when both sides list
# the same method first. See Transport._guess_used.
GUESS_TAKEN_BY = (b"SSH-2.0-AsyncSSH_",)

# --- the host key ---

def _verify_host(blob: bytes, pinned: bytes, signature: bytes, exchange_hash: bytes) -> None:
    if blob != pinned:
        raise Unsupported("the box's host key is not the pinned one")
    key = Reader(blob)
    sig = Reader(signature)
    if key.string() != HOST_KEY or sig.string() != HOST_KEY:
        raise Unsupported("not an ed25519 host key")
    try:
        Ed25519PublicKey.from_public_bytes(key.string()).verify(sig.string(), exchange_hash)
    except (InvalidSignature, ValueError):
        raise Unsupported("the box's signature does not verify") from None


def _x25519_binding() -> Any:
    """What makes X25519 keys. The public classmethods (X25519PrivateKey.generate,
    X25519PublicKey.from_public_bytes) import cryptography's whole OpenSSL backend (rsa,
    padding, random...: 5-10 ms here, a tenth of a short request) only to ask whether OpenSSL
    has X25519, which the key exchange would say anyway; then they call this binding. So it
    is called directly, and the public classes are the fallback where it is not found."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        binding = rust_openssl.x25519
        if callable(binding.generate_key) and callable(binding.from_public_bytes):
            return binding
    except (ImportError, AttributeError):
        pass

    class Public:
        generate_key = staticmethod(X25519PrivateKey.generate)
        from_public_bytes = staticmethod(X25519PublicKey.from_public_bytes)

    return Public


_x25519 = _x25519_binding()


# --- the transport ---

class _Keys:
    """One direction's AES-GCM state: the key and the 12-byte nonce, counting up per packet."""

    def __init__(self, key: bytes, iv: bytes) -> None:
        self.aead = AESGCM(key)
        self.fixed = iv[:4]
        self.counter = int.from_bytes(iv[4:12], "big")

    def nonce(self) -> bytes:
        nonce = self.fixed + self.counter.to_bytes(8, "big")
        self.counter = (self.counter + 1) & 0xFFFFFFFFFFFFFFFF
        return nonce


class Transport:
    """One SSH connection: packets, the key exchange (again, when the box rekeys), user auth.

    Sending is thread-safe (a console sends keys from one thread while another reads);
    reading is done by one thread at a time.
    """

    def __init__(self, sock: socket.socket, pinned: bytes, version: bytes = VERSION,
                 version_sent: bool = False) -> None:
        self.sock = sock
        self.pinned = pinned
        # Our version line, and whether it went out already (client/preconnect.py sends it
        # while the client imports): the key exchange hashes the line that was sent.
        self.version = version
        self.version_sent = version_sent
        self.inbuf = bytearray()
        self.out: list[bytes] = []  # packets built but not yet written (one write per flight)
        self.send_lock = threading.RLock()
        self.send_seq = self.recv_seq = 0
        self.send_keys: _Keys | None = None
        self.recv_keys: _Keys | None = None
        self.session_id = b""
        self.strict = False
        self.server_version = b""
        # Until the first NEWKEYS: strict kex (OpenSSH's PROTOCOL, the Terrapin fix) allows no
        # IGNORE, DEBUG or UNIMPLEMENTED there, and the box's KEXINIT must come first.
        self.first_kex = True
        self.skipped_in_first_kex = 0
        self.key_sets = 0  # key exchanges done (the box's rekeys after the first)

    # --- packets ---

    def queue(self, payload: bytes) -> None:
        """Build one packet; it goes out with the next flush()."""
        with self.send_lock:
            keys = self.send_keys
            block = 16 if keys else 8
            head = 1 if keys else 5  # GCM leaves the length field out of the padded part
            pad = -(head + len(payload)) % block
            if pad < 4:
                pad += block
            body = bytes([pad]) + payload + os.urandom(pad)
            length = u32(len(body))
            if keys is None:
                self.out.append(length + body)
            else:
                self.out.append(length + keys.aead.encrypt(keys.nonce(), body, length))
            self.send_seq = (self.send_seq + 1) & 0xFFFFFFFF

    def flush(self) -> None:
        with self.send_lock:
            data, self.out = b"".join(self.out), []
            try:
                self.sock.sendall(data)
            except TimeoutError:
                raise
            except OSError as exc:
                raise Lost(str(exc)) from None

    def send(self, payload: bytes) -> None:
        with self.send_lock:
            self.queue(payload)
            self.flush()

    def _fill(self, size: int) -> None:
        while len(self.inbuf) < size:
            try:
                chunk = self.sock.recv(max(65536, size - len(self.inbuf)))
            except TimeoutError:
                raise
            except OSError as exc:
                raise Lost(str(exc)) from None
            if not chunk:
                raise Lost("the box closed the connection")
            self.inbuf += chunk

    def packet_ready(self) -> bool:
        """A whole packet is already read from the socket and waits here."""
        if len(self.inbuf) < 4:
            return False
        (length,) = struct.unpack_from(">I", self.inbuf)
        return len(self.inbuf) >= 4 + length + (16 if self.recv_keys else 0)

    def read_packet(self) -> bytes:
        """The next packet's payload, IGNORE and DEBUG skipped."""
        while True:
            self._fill(4)
            (length,) = struct.unpack_from(">I", self.inbuf)
            keys = self.recv_keys
            total = self.check_length(length)
            self._fill(total)
            raw = bytes(self.inbuf[:total])
            del self.inbuf[:total]
            if keys is None:
                body = raw[4:]
            else:
                try:
                    body = keys.aead.decrypt(keys.nonce(), raw[4:], raw[:4])
                except InvalidTag:
                    raise Lost("a packet failed its integrity check") from None
            payload = self.payload_of(body)
            if payload is not None:
                assert isinstance(payload, bytes)  # a slice of bytes
                return payload

    def check_length(self, length: int) -> int:
        """A packet's whole size on the wire from its length field; Lost when the length is
        not one a box may send."""
        keys = self.recv_keys
        # RFC 4253 6 and RFC 5647 7.2: whole cipher blocks (GCM leaves the length out).
        whole_blocks = length % 16 == 0 if keys else (4 + length) % 8 == 0
        if not 5 <= length <= protocol.QUICK_PACKET_LIMIT or not whole_blocks:
            raise Lost(f"bad packet length {length}")
        return 4 + length + (16 if keys else 0)

    def payload_of(self, body: bytes | memoryview) -> bytes | memoryview | None:
        """A decrypted packet's payload (counted in); None for one to skip (IGNORE, DEBUG);
        Lost for a bad one or the box's DISCONNECT. `body` may be a view: so is the payload."""
        self.recv_seq = (self.recv_seq + 1) & 0xFFFFFFFF
        pad = body[0]
        if pad < 4:
            raise Lost("bad packet padding")
        payload = body[1:len(body) - pad]
        if not payload:
            raise Lost("empty packet")
        if payload[0] in (IGNORE, DEBUG, UNIMPLEMENTED):
            if self.first_kex:
                self.skipped_in_first_kex += 1
                if self.strict:
                    raise Lost("the box broke strict key exchange")
            return None
        if payload[0] == DISCONNECT:
            reason = printable(Reader(bytes(payload), 5).string())
            raise Lost(f"the box disconnected: {reason}")
        return payload

    # --- the handshake ---

    def _kexinit(self) -> bytes:
        kex = KEX + b"," + STRICT_C if not self.session_id else KEX
        lists = (kex, HOST_KEY, CIPHER, CIPHER, b"hmac-sha2-256", b"hmac-sha2-256", b"none",
                 b"none", b"", b"")
        return (bytes([KEXINIT]) + os.urandom(16) + b"".join(string(n) for n in lists)
                + b"\1" + u32(0))  # first_kex_packet_follows: our ECDH_INIT comes right after

    def start(self, user: str, key: Ed25519PrivateKey, public_blob: bytes,
              then: list[bytes]) -> None:
        """Key exchange and auth; `then` (a channel open) goes out with the auth request."""
        if not self.version_sent:
            self.out.append(self.version + b"\r\n")
            self.version_sent = True
        self.server_version = self._exchange_keys(None)
        self.queue(bytes([SERVICE_REQUEST]) + string(b"ssh-userauth"))
        signed = (string(self.session_id) + bytes([USERAUTH_REQUEST]) + string(user.encode())
                  + string(b"ssh-connection") + string(b"publickey") + b"\1" + string(HOST_KEY)
                  + string(public_blob))
        signature = string(HOST_KEY) + string(key.sign(signed))
        self.queue(signed[4 + len(self.session_id):] + string(signature))
        for payload in then:
            self.queue(payload)
        self.flush()
        while True:
            payload = self.read_packet()
            kind = payload[0]
            if kind == USERAUTH_SUCCESS:
                return
            if kind == USERAUTH_FAILURE:
                raise Unsupported("the box refused the key")
            if kind not in (SERVICE_ACCEPT, EXT_INFO, USERAUTH_BANNER):
                raise Unsupported(f"unexpected message {kind} during auth")

    def _read_version(self) -> bytes:
        skipped = 0
        while True:
            self._fill(1)
            end = self.inbuf.find(b"\n")
            if end < 0 or skipped + end > MAX_BEFORE_VERSION:
                if skipped + len(self.inbuf) > MAX_BEFORE_VERSION:
                    raise Unsupported("no SSH version line")
                self._fill(len(self.inbuf) + 1)
                continue
            line = bytes(self.inbuf[:end]).rstrip(b"\r")
            del self.inbuf[:end + 1]
            skipped += end + 1
            if line.startswith(b"SSH-"):
                if not line.startswith(b"SSH-2.0-"):
                    raise Unsupported("not SSH 2")
                return line

    def _exchange_keys(self, server_kexinit: bytes | None) -> bytes:
        """curve25519-sha256 with our guess sent at once. Run again when the box rekeys, with
        the box's KEXINIT already read (and then nothing else may be sent until NEWKEYS)."""
        with self.send_lock:
            ours = self._kexinit()
            ephemeral = _x25519.generate_key()
            q_c = ephemeral.public_key().public_bytes_raw()
            self.queue(ours)
            self.queue(bytes([KEX_ECDH_INIT]) + string(q_c))
            self.flush()
            version = self.server_version or self._read_version()
            theirs = server_kexinit or self.read_packet()
            if theirs[0] != KEXINIT:
                raise Unsupported("the box did not start the key exchange")
            first_kex = not self.session_id
            self._check_algorithms(theirs, first_kex)
            if not self._guess_used(theirs, version):
                # The box drops our guessed ECDH_INIT and waits for another: take the way
                # that does not guess (mid-session, there is none: the connection is lost).
                why = "the box would ignore the key-exchange guess"
                raise Unsupported(why) if first_kex else Lost(why)
            reply = self.read_packet()
            if reply[0] != KEX_ECDH_REPLY:
                raise Unsupported("unexpected key exchange reply")
            r = Reader(reply, 1)
            host_blob, q_s, signature = r.string(), r.string(), r.string()
            try:
                shared = ephemeral.exchange(_x25519.from_public_bytes(q_s))
            except ValueError:
                raise Unsupported("bad key exchange value") from None
            k = mpint(shared)
            digest = sha256(
                string(self.version) + string(version) + string(ours) + string(theirs)
                + string(host_blob) + string(q_c) + string(q_s) + k).digest()
            _verify_host(host_blob, self.pinned, signature, digest)
            if first_kex:
                self.session_id = digest
            self.queue(bytes([NEWKEYS]))
            self.send_keys = self._derive(k, digest, b"A", b"C")
            if self.strict:
                self.send_seq = 0
            if self.read_packet()[0] != NEWKEYS:
                raise Unsupported("the box did not finish the key exchange")
            self.recv_keys = self._derive(k, digest, b"B", b"D")
            if self.strict:
                self.recv_seq = 0
            self.first_kex = False
            self.key_sets += 1
            return version

    def _check_algorithms(self, theirs: bytes, first_kex: bool) -> None:
        r = Reader(theirs, 17)
        kex, host_keys, enc_cs, enc_sc = r.names(), r.names(), r.names(), r.names()
        if KEX not in kex or HOST_KEY not in host_keys or CIPHER not in enc_cs \
                or CIPHER not in enc_sc:
            raise Unsupported("the box offers none of the quick client's algorithms")
        if first_kex:
            self.strict = STRICT_S in kex
            if self.strict and self.skipped_in_first_kex:
                raise Lost("the box broke strict key exchange")

    @staticmethod
    def _guess_used(theirs: bytes, version: bytes) -> bool:
        """Whether the box takes the ECDH_INIT we sent before seeing its KEXINIT. RFC 4253 7:
        when both first-listed kex and host key algorithms match ours. AsyncSSH also when it
        negotiated our first choice, which it did if we got here."""
        r = Reader(theirs, 17)
        kex, host_keys = r.names(), r.names()
        rfc_match = kex[:1] == [KEX] and host_keys[:1] == [HOST_KEY]
        return rfc_match or version.startswith(GUESS_TAKEN_BY)

    def _derive(self, k: bytes, digest: bytes, iv_letter: bytes, key_letter: bytes) -> _Keys:
        def material(letter: bytes) -> bytes:
            return sha256(k + digest + letter + self.session_id).digest()

        return _Keys(material(key_letter)[:16], material(iv_letter)[:12])

    def rekey(self, server_kexinit: bytes) -> None:
        with self.send_lock:
            self._exchange_keys(server_kexinit)
            self.flush()  # our NEWKEYS

    def refuse_global(self, payload: bytes) -> None:
        """Keepalives and other global requests: say no when an answer is wanted."""
        r = Reader(payload, 1)
        r.string()
        if r.byte():
            self.send(bytes([REQUEST_FAILURE]))

    def close(self) -> None:
        try:
            with self.send_lock:
                if self.send_keys is not None:
                    self.queue(bytes([DISCONNECT]) + u32(11) + string(b"done") + string(b""))
                    self.flush()
        except (Lost, OSError):
            pass  # going away anyway
        try:
            # Wakes a thread blocked reading this socket (close alone does not, on Linux).
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """TCP to the box; Unsupported on any failure, so the full path reports it in its words
    (OSError when the box did not answer in time: going the full way would wait again)."""
    try:
        # An ASCII name as bytes: a str would load the idna codec for nothing.
        name: str | bytes = host.encode("ascii") if host.isascii() else host
        sock = socket.create_connection((name, port), timeout=timeout)  # type: ignore[arg-type]
    except TimeoutError:
        raise
    except OSError as exc:
        raise Unreachable(f"cannot connect: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock

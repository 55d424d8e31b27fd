"""The Python console inside a paused script: one per connection, each on its own threads.

Two consoles on one pause both work, each with its own snapshot of the namespace. A session
has a reader thread (socket to a character queue; Ctrl-C while a statement runs interrupts
that statement only) and an exec thread (reads lines, runs them).
"""
from __future__ import annotations

import code
import ctypes
import queue
import rlcompleter
import socket
import threading
from types import FrameType
from typing import Any

from ..breakpoints.pause import CONSOLE_THREAD
from .lineedit import EndOfInput, LineEditor, LineInterrupted
from .routing import routed_streams

GREETING = "Connected to interactive console (Ctrl+D to disconnect)"
CLOSED_ON_RESUME = "=== script resumed; console closed"


class _ConsoleClosed(BaseException):
    """Raised into a statement still running when the script resumes."""


class _Disconnect:
    """exit() and quit() in the console: disconnect, never end the script (or close stdin)."""

    def __repr__(self) -> str:
        return "Use exit() or Ctrl-D to disconnect; the script stays paused"

    def __call__(self, code: Any = None) -> None:
        raise SystemExit(code)


def snapshot(frame: FrameType | None) -> dict[str, Any]:
    """Globals then locals of the paused frame, copied: rebinding a name stays in the console;
    mutating a shared object (a list, an instrument) acts on the script's own object."""
    namespace: dict[str, Any] = {}
    if frame is not None:
        namespace.update(frame.f_globals)
        namespace.update(frame.f_locals)
    namespace["exit"] = namespace["quit"] = _Disconnect()
    return namespace


class _SocketSink:
    def __init__(self, session: ConsoleSession) -> None:
        self.session = session

    def write(self, text: str) -> int:
        self.session.send(text)
        return len(text)

    def flush(self) -> None:
        return None


class ConsoleSession:
    def __init__(self, sock: socket.socket, pty: bool, namespace: dict[str, Any],
                 where: str) -> None:
        self.sock = sock
        self.pty = pty
        self.where = where
        self.chars: queue.Queue[str | None] = queue.Queue()
        self.closed = threading.Event()
        self.executing = False
        self._send_lock = threading.Lock()
        self.console = code.InteractiveConsole(namespace, filename="<console>")
        self.console.write = self.send  # type: ignore[method-assign,assignment]
        self.completer = rlcompleter.Completer(namespace)
        self.exec_thread = threading.Thread(target=self._exec_loop, name=CONSOLE_THREAD,
                                            daemon=True)
        self.reader_thread = threading.Thread(target=self._read_loop,
                                              name="lager-console-reader", daemon=True)

    def start(self) -> None:
        self.exec_thread.start()
        self.reader_thread.start()

    def send(self, text: str) -> None:
        data = (text.replace("\r\n", "\n").replace("\n", "\r\n") if self.pty else text).encode(
            "utf-8", "replace")
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the client is gone; the exec loop sees EOF and ends

    def _read_loop(self) -> None:
        decoder_buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.chars.put(None)
                return
            decoder_buf += data
            try:
                text = decoder_buf.decode("utf-8")
                decoder_buf = b""
            except UnicodeDecodeError as exc:
                if exc.start < len(decoder_buf) - 4:  # not just a split character: garbage
                    text, decoder_buf = decoder_buf.decode("utf-8", "replace"), b""
                else:
                    text, decoder_buf = decoder_buf[:exc.start].decode(), decoder_buf[exc.start:]
            for ch in text:
                if ch == "\x03" and self.executing:
                    self._raise_in_exec(KeyboardInterrupt)
                else:
                    self.chars.put(ch)

    def _raise_in_exec(self, exc_type: type[BaseException]) -> None:
        ident = self.exec_thread.ident
        if ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                       ctypes.py_object(exc_type))

    def _read_line_piped(self) -> str:
        chars: list[str] = []
        while True:
            ch = self.chars.get()
            if ch is None:
                if chars:
                    return "".join(chars)
                raise EndOfInput
            if ch == "\n":
                return "".join(chars).rstrip("\r")
            chars.append(ch)

    def _complete(self, word: str) -> list[str]:
        found, state = [], 0
        while state < 200:
            option = self.completer.complete(word, state)
            if option is None:
                break
            found.append(option)
            state += 1
        return found

    def _exec_loop(self) -> None:
        stdout, stderr = routed_streams()
        me = threading.get_ident()
        sink = _SocketSink(self)
        stdout.route(me, sink)
        stderr.route(me, sink)
        editor = LineEditor(self.chars.get, self.send, self._complete) if self.pty else None
        try:
            self.send(f"{GREETING}\npaused at {self.where}\n")
            more = False
            while not self.closed.is_set():
                prompt = "... " if more else ">>> "
                try:
                    line = editor.read_line(prompt) if editor else self._read_line_piped()
                except LineInterrupted:
                    self.console.resetbuffer()
                    more = False
                    continue
                except EndOfInput:
                    break
                if self.closed.is_set():
                    break
                more = self._run(line)
        except (SystemExit, _ConsoleClosed):
            pass
        finally:
            stdout.unroute(me)
            stderr.unroute(me)
            self._hang_up()

    def _run(self, line: str) -> bool:
        self.executing = True
        try:
            return self.console.push(line)
        except KeyboardInterrupt:
            self.send("KeyboardInterrupt\n")
            self.console.resetbuffer()
            return False
        finally:
            self.executing = False

    def _hang_up(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """The script resumes: tell the client, stop any statement, and end the session."""
        self.closed.set()
        self.send(f"\n{CLOSED_ON_RESUME}\n")
        if self.executing:
            self._raise_in_exec(_ConsoleClosed)
        self._hang_up()
        self.chars.put(None)
        self.exec_thread.join(timeout=2)
        self.reader_thread.join(timeout=1)
        self.sock.close()


class ConsoleSessions:
    """All consoles of one pause; they end together when it resumes."""

    def __init__(self, frame: FrameType | None, label: str | None, where: str) -> None:
        self.frame = frame
        self.where = f'"{label}" {where}' if label else where
        self.sessions: list[ConsoleSession] = []

    def open(self, fd: int, pty: bool) -> None:
        sock = socket.socket(fileno=fd)
        session = ConsoleSession(sock, pty, snapshot(self.frame), self.where)
        self.sessions.append(session)
        session.start()

    def close_all(self) -> None:
        for session in self.sessions:
            session.close()
        self.sessions.clear()

"""The Python console inside a paused script: one per connection, each on its own threads.

Two consoles on one pause both work, each with its own snapshot of the namespace. A session has
three threads: a reader (the agent's frames to keys, window sizes and interrupts), the console
loop (edits lines, compiles them, waits for each statement) and a runner (runs statements; see
runner.py for what happens to one that is blocked in C).
"""
from __future__ import annotations

import code
import codecs
import re
import rlcompleter
import socket
import sys
import threading
from collections.abc import Callable
from queue import Queue
from types import CodeType, FrameType
from typing import Any

from . import wire
from .lineedit import PASTE_OFF, EndOfInput, LineEditor, LineInterrupted, Resize
from .routing import routed_streams
from .runner import GRACE, ConsoleClosed, Job, Runner, raise_in, stuck_note

GREETING = "Connected to interactive console (Ctrl+D to disconnect)"
CLOSED_ON_RESUME = "=== script resumed; console closed"
_RESIZED = object()  # queued among the keys: the window changed, read its size from the session
# A pasted line at the left margin ends the block before it, as in a file; these continue it.
_BLOCK_START = re.compile(r"(if|elif|else|for|while|def|class|with|try|except|finally|async|"
                          r"match|@)\b|@")
_CONTINUES = re.compile(r"(else|elif|except|finally)\b")


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


class ConsoleSession:
    def __init__(self, sock: socket.socket, pty: bool, namespace: dict[str, Any],
                 where: str) -> None:
        self.sock = sock
        self.pty = pty
        self.where = where
        self.namespace = namespace
        self.inbox: Queue[str | object | None] = Queue()
        self.cols = wire.DEFAULT_COLS
        self._resize_queued = False
        self._line_start = True  # the last output ended its line: a prompt can start there
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        self._job_lock = threading.Lock()
        self.job: Job | None = None
        self.buffer: list[str] = []  # lines of a statement still being typed
        self.abandoned: list[tuple[Runner, Job]] = []
        self.runner: Runner | None = None
        self.completer = rlcompleter.Completer(namespace)
        # Compiles lines (keeping `from __future__` across them) and shows syntax errors; the
        # runner's own interpreter runs them.
        self.interp = code.InteractiveInterpreter(namespace)
        self.interp.write = self.output  # type: ignore[method-assign,assignment]
        self.loop_thread = threading.Thread(target=self._loop, name="lager-console-loop",
                                            daemon=True)
        self.reader_thread = threading.Thread(target=self._read_loop,
                                              name="lager-console-reader", daemon=True)

    def start(self) -> None:
        self.runner = Runner(self.namespace, self.output)
        self.loop_thread.start()
        self.reader_thread.start()

    def write(self, text: str) -> int:  # a sink for the loop thread's own stdout (completion)
        self.output(text)
        return len(text)

    def output(self, text: str) -> None:
        """What statements print (the editor's drawing goes through send)."""
        if text:
            self._line_start = text.endswith("\n")
            self.send(text)

    def flush(self) -> None:
        return None

    def send(self, text: str) -> None:
        data = (text.replace("\r\n", "\n").replace("\n", "\r\n") if self.pty else text).encode(
            "utf-8", "replace")
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the client is gone; the loop sees EOF and ends

    # --- input: frames from the agent ---------------------------------------------------------
    def _read_loop(self) -> None:
        frames = wire.FrameDecoder()
        text = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                data = self.sock.recv(65536)
                batch = frames.feed(data) if data else []
            except (OSError, wire.WireError):
                data, batch = b"", []
            if not data:
                self.inbox.put(None)
                return
            for frame in batch:
                if isinstance(frame, wire.Data):
                    for ch in text.decode(frame.payload):
                        if ch != "\x03" or not self._interrupt():
                            self.inbox.put(ch)
                elif isinstance(frame, wire.Window):
                    self.cols = frame.cols
                    if not self._resize_queued:  # a flood of changes is one redraw
                        self._resize_queued = True
                        self.inbox.put(_RESIZED)
                elif not self._interrupt() and self.pty:
                    self.inbox.put("\x03")  # a break while editing drops the line

    def _interrupt(self) -> bool:
        """Ctrl-C for the running statement; False when none runs."""
        with self._job_lock:
            if self.job is None:
                return False
            self.job.events.put("interrupt")
            return True

    def _typed_ahead_interrupt(self) -> bool:
        """A Ctrl-C that came after the Enter that ran this statement, but before it was the
        running job, waits in the inbox as a key: take it as the statement's interrupt."""
        with self.inbox.mutex:
            if "\x03" in self.inbox.queue:
                self.inbox.queue.remove("\x03")
                return True
        return False

    def _next_key(self) -> str | Resize | None:
        item = self.inbox.get()
        if item is _RESIZED:
            self._resize_queued = False  # before reading cols: a later change queues again
            return Resize(self.cols)
        return item if isinstance(item, str) else None

    def _read_line_piped(self) -> str:
        chars: list[str] = []
        while True:
            ch = self.inbox.get()
            if ch is None:
                if chars:
                    return "".join(chars)
                raise EndOfInput
            if ch == "\n":
                return "".join(chars).rstrip("\r")
            if isinstance(ch, str):
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

    # --- the console loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        stdout, stderr = routed_streams()
        me = threading.get_ident()
        stdout.route(me, self)  # completion may run a property that prints
        stderr.route(me, self)
        editor = LineEditor(self._next_key, self.send, self._complete, self.cols) \
            if self.pty else None
        try:
            self.send(f"{GREETING}\npaused at {self.where}\n")
            while not self.closed.is_set():
                prompt = "... " if self.buffer else ">>> "
                if editor and not self._line_start:
                    self.send("\n")  # print(x, end="") is not drawn over by the prompt
                    self._line_start = True
                try:
                    line = editor.read_line(prompt) if editor else self._read_line_piped()
                except LineInterrupted:
                    self.buffer.clear()
                    continue
                except EndOfInput:
                    break
                if editor and editor.from_paste and self._pasted_line_ends_block(line) \
                        and not self._push(""):
                    break
                if self.closed.is_set() or not self._push(line):
                    break
        finally:
            stdout.unroute(me)
            stderr.unroute(me)
            if editor:
                self.send(PASTE_OFF)
            if self.runner is not None and self.runner not in (r for r, _ in self.abandoned):
                self.runner.stop()
            if not self.closed.is_set():
                self._hang_up()  # a resume hangs up itself, after its last words

    def _pasted_line_ends_block(self, line: str) -> bool:
        return bool(self.buffer) and bool(_BLOCK_START.match(self.buffer[0])) \
            and not self.buffer[-1].endswith("\\") and bool(line.strip()) \
            and not line[0].isspace() and not _CONTINUES.match(line)

    def _push(self, line: str) -> bool:
        """Add a line; run the statement once it is complete. False: the console ends."""
        self.buffer.append(line)
        source = "\n".join(self.buffer)
        try:
            compiled = self.interp.compile(source, "<console>", "single")
        except (OverflowError, SyntaxError, ValueError):
            self.buffer.clear()
            self.interp.showsyntaxerror("<console>")
            return True
        if compiled is None:
            return True  # more lines to come
        self.buffer.clear()
        return self._execute(compiled, source)

    def _execute(self, compiled: CodeType, source: str) -> bool:
        assert self.runner is not None
        job = Job(compiled, source)
        with self._job_lock:
            if self.closed.is_set():
                return False
            self.job = job
            if self.pty and self._typed_ahead_interrupt():
                job.events.put("interrupt")
        runner = self.runner
        runner.submit(job)
        try:
            while True:
                event = job.events.get()
                if event == "done":
                    return not job.exit
                stop = KeyboardInterrupt if event == "interrupt" else ConsoleClosed
                if not runner.interrupt(job, stop) or job.done.wait(GRACE):
                    continue  # it stopped: its "done" is queued
                self.abandoned.append((runner, job))
                runner.abandon()
                if event == "close":
                    return False  # the resume reports it
                self.output(f"KeyboardInterrupt: the statement is {stuck_note(runner.thread)}\n")
                self.runner = Runner(self.namespace, self.output)
                return True
        finally:
            with self._job_lock:
                self.job = None

    # --- the end --------------------------------------------------------------------------------
    def _hang_up(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def begin_close(self) -> None:
        """The script resumes: stop the running statement, wake an editor waiting for keys."""
        self.closed.set()
        with self._job_lock:
            if self.job is not None:
                self.job.events.put("close")
        self.inbox.put(None)

    def finish_close(self) -> list[str]:
        """Tell the client, end the session; returns lines for the run's output."""
        self.loop_thread.join(GRACE + 2)
        notes = []
        for runner, job in self.abandoned:
            if runner.thread.is_alive():
                note = stuck_note(runner.thread)
                raise_in(runner.thread, ConsoleClosed)
                notes.append(f"console statement `{job.summary()}` at resume: {note}")
        for note in notes:
            self.send(f"lager: {note}\n")
        self.send(f"\n{CLOSED_ON_RESUME}\n")
        self._hang_up()
        self.reader_thread.join(1)
        self.sock.close()
        return notes


class ConsoleSessions:
    """All consoles of one pause; they end together when it resumes.

    `seed` adds names to each console's own namespace once its snapshot is taken (a pause on
    failure adds `exc`, `frames()` and `frame(n)`, bound to that console's namespace).
    """

    def __init__(self, frame: FrameType | None, label: str | None, where: str,
                 seed: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.frame = frame
        self.where = f'"{label}" {where}' if label else where
        self.seed = seed
        self.sessions: list[ConsoleSession] = []

    def open(self, fd: int, pty: bool) -> None:
        sock = socket.socket(fileno=fd)
        namespace = snapshot(self.frame)
        if self.seed is not None:
            self.seed(namespace)
        session = ConsoleSession(sock, pty, namespace, self.where)
        self.sessions.append(session)
        session.start()

    def close_all(self) -> None:
        had_sessions = bool(self.sessions)
        for session in self.sessions:
            session.begin_close()  # all at once: each may wait out a grace
        for session in self.sessions:
            for note in session.finish_close():
                try:
                    sys.stderr.write(f"lager: {note}\n")
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass  # the run's stderr is gone; the console was told
        self.sessions.clear()
        if had_sessions:
            from .unstick import unstick_eval_breaker

            unstick_eval_breaker()  # before the script runs on (see unstick.py)

"""A small line editor for the console when the client has a terminal (`ssh -t`, a TTY).

readline only edits the process's own stdin, and the console talks over a socket, so this does
the part of readline a console needs: editing, history and tab completion.
"""
from __future__ import annotations

import re
from collections.abc import Callable

CTRL_A, CTRL_C, CTRL_D, CTRL_E, CTRL_K, CTRL_U = "\x01", "\x03", "\x04", "\x05", "\x0b", "\x15"
BACKSPACES = ("\x7f", "\x08")
_TOKEN = re.compile(r"[\w.\[\]'\"]*$")


class EndOfInput(Exception):
    """Ctrl-D on an empty line, or the client went away."""


class LineInterrupted(Exception):
    """Ctrl-C while editing: drop the line, as Python's prompt does."""


class LineEditor:
    def __init__(self, read_char: Callable[[], str | None], write: Callable[[str], None],
                 complete: Callable[[str], list[str]]) -> None:
        self.read_char = read_char
        self.write = write
        self.complete = complete
        self.history: list[str] = []

    def read_line(self, prompt: str) -> str:
        buf: list[str] = []
        pos = 0
        hist_index = len(self.history)
        self.write(prompt)

        def redraw() -> None:
            tail = len(buf) - pos
            self.write("\r" + prompt + "".join(buf) + "\x1b[K" + (f"\x1b[{tail}D" if tail else ""))

        while True:
            ch = self._next()
            if ch in ("\r", "\n"):
                self.write("\r\n")
                line = "".join(buf)
                if line.strip() and (not self.history or self.history[-1] != line):
                    self.history.append(line)
                return line
            if ch == CTRL_C:
                self.write("^C\r\n")
                raise LineInterrupted
            if ch == CTRL_D:
                if not buf:
                    self.write("\r\n")
                    raise EndOfInput
                if pos < len(buf):
                    del buf[pos]
            elif ch in BACKSPACES:
                if pos:
                    pos -= 1
                    del buf[pos]
            elif ch == CTRL_A:
                pos = 0
            elif ch == CTRL_E:
                pos = len(buf)
            elif ch == CTRL_U:
                del buf[:pos]
                pos = 0
            elif ch == CTRL_K:
                del buf[pos:]
            elif ch == "\t":
                pos = self._tab(buf, pos, prompt)
            elif ch == "\x1b":
                key = self._escape()
                if key == "left" and pos:
                    pos -= 1
                elif key == "right" and pos < len(buf):
                    pos += 1
                elif key == "home":
                    pos = 0
                elif key == "end":
                    pos = len(buf)
                elif key == "delete" and pos < len(buf):
                    del buf[pos]
                elif key in ("up", "down") and self.history:
                    hist_index = max(0, hist_index - 1) if key == "up" else \
                        min(len(self.history), hist_index + 1)
                    text = self.history[hist_index] if hist_index < len(self.history) else ""
                    buf, pos = list(text), len(text)
            elif ch >= " ":
                buf.insert(pos, ch)
                pos += 1
                if pos == len(buf):  # typing at the end: echo, no redraw
                    self.write(ch)
                    continue
            redraw()

    def _next(self) -> str:
        ch = self.read_char()
        if ch is None:
            raise EndOfInput
        return ch

    def _escape(self) -> str:
        first = self._next()
        if first not in ("[", "O"):
            return ""
        seq = ""
        while True:
            ch = self._next()
            seq += ch
            if ch.isalpha() or ch == "~" or len(seq) > 6:
                break
        return {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
                "1~": "home", "4~": "end", "3~": "delete"}.get(seq, "")

    def _tab(self, buf: list[str], pos: int, prompt: str) -> int:
        before = "".join(buf[:pos])
        token = _TOKEN.search(before)
        word = token.group(0) if token else ""
        if not word.strip():
            buf[pos:pos] = list("    ")  # Tab at the start of a block line indents
            return pos + 4
        options = sorted(set(self.complete(word)))
        if not options:
            return pos
        common = options[0]
        for option in options[1:]:
            while not option.startswith(common):
                common = common[:-1]
        if len(common) > len(word):
            extra = common[len(word):]
            buf[pos:pos] = list(extra)
            return pos + len(extra)
        if len(options) > 1:
            self.write("\r\n" + "  ".join(options) + "\r\n" + prompt)
        return pos

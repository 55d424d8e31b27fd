"""A small line editor for the console when the client has a terminal (`ssh -t`, a TTY).

readline only edits the process's own stdin, and the console talks over a socket, so this does
the part of readline a console needs: editing that wraps at the window's width and follows its
changes, history with Ctrl-R search, word and line kills, bracketed paste and Tab completion.
prompt_toolkit would do all of it, but it is not on the boxes and a paused script should not
pay for importing it.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .screen import Renderer

BACKSPACES = ("\x7f", "\x08")
ENTER = ("\r", "\n")
PASTE_ON, PASTE_OFF = "\x1b[?2004h", "\x1b[?2004l"
HISTORY_LIMIT = 1000
_TOKEN = re.compile(r"[\w.\[\]'\"]*$")
_ESCAPES = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
            "1~": "home", "7~": "home", "4~": "end", "8~": "end", "3~": "delete",
            "200~": "paste-start", "201~": "paste-end", "1;5C": "word-right",
            "1;5D": "word-left", "1;3C": "word-right", "1;3D": "word-left"}
_META = {"b": "word-left", "f": "word-right", "d": "kill-word-right", "\x7f": "kill-word",
         "\x08": "kill-word"}
# Keys that only move or edit: in a history search they take the match and then act.
_CTRL_KEYS = {"\x01": "home", "\x02": "left", "\x05": "end", "\x06": "right", "\x0b": "kill-end",
              "\x0c": "clear", "\x0e": "down", "\x10": "up", "\x15": "kill-start",
              "\x17": "kill-word", "\x19": "yank"}


@dataclass(frozen=True)
class Resize:
    """The window changed size; queued among the keys so the editor redraws in order."""

    cols: int


class EndOfInput(Exception):
    """Ctrl-D on an empty line, or the client went away."""


class LineInterrupted(Exception):
    """Ctrl-C while editing: drop the line, as Python's prompt does."""


@dataclass
class _Search:
    query: str
    index: int  # history entry shown; len(history) while nothing matches yet
    failed: bool
    saved: tuple[list[str], int]  # the line being edited when the search began


class LineEditor:
    def __init__(self, read_key: Callable[[], str | Resize | None], write: Callable[[str], None],
                 complete: Callable[[str], list[str]], cols: int = 80) -> None:
        self.read_key = read_key
        self.write = write
        self.complete = complete
        self.history: list[str] = []
        self.screen = Renderer(write, cols)
        self.from_paste = False  # the last line read holds pasted text
        self._in_paste = False  # survives read_line: one paste can hold many lines
        self._line_pasted = False
        self._stale = False  # pasted text is in the line but not on the screen yet
        self._paste_cr = False  # the last pasted character was CR: a LF next is its pair
        self._killed = ""
        self._last_query = ""
        self._prompt = ""
        self._buf: list[str] = []
        self._pos = 0
        self._hist_index = 0
        self._bottom = ""  # the new line being typed while history is shown
        self._search: _Search | None = None

    # --- the loop -------------------------------------------------------------------------
    def read_line(self, prompt: str) -> str:
        self._prompt, self._buf, self._pos = prompt, [], 0
        self._search = None
        self._line_pasted = self._in_paste
        self._hist_index, self._bottom = len(self.history), ""
        self.write(PASTE_ON)
        self._redraw()
        while True:
            key = self._key()
            if self._in_paste:
                if self._paste_char(key):
                    return self._accept()
                continue
            if self._search is not None:
                passed = self._search_key(key)
                if passed is None:
                    continue
                key = passed
            if key in ENTER:
                return self._accept()
            if key in ("up", "down", "\x10", "\x0e"):
                self._browse(older=key in ("up", "\x10"))
            elif key == "\x12":
                self._search = _Search("", len(self.history), False, (self._buf[:], self._pos))
                self._redraw()
            else:
                self._edit(key)

    def _accept(self) -> str:
        if self._stale:
            self._redraw()
        self.screen.finish(self._prompt, "".join(self._buf), self._pos)
        line = "".join(self._buf)
        self.from_paste = self._line_pasted
        if line.strip() and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-HISTORY_LIMIT]
        return line

    def _browse(self, older: bool) -> None:
        """Up/Down: older or newer history; the line being typed waits at the bottom."""
        if not self.history:
            return
        if self._hist_index == len(self.history):
            self._bottom = "".join(self._buf)
        step = -1 if older else 1
        self._hist_index = min(len(self.history), max(0, self._hist_index + step))
        text = self.history[self._hist_index] if self._hist_index < len(self.history) \
            else self._bottom
        self._buf, self._pos = list(text), len(text)
        self._redraw()

    def _edit(self, key: str) -> None:
        """One editing key outside a search; typing at the end echoes without a redraw."""
        buf, pos = self._buf, self._pos
        key = _CTRL_KEYS.get(key, key)
        if key == "\x03":
            self._buf, self._pos = buf + list("^C"), len(buf) + 2
            self._redraw()
            self.screen.finish(self._prompt, "".join(self._buf), self._pos)
            raise LineInterrupted
        if key == "\x04":
            if not buf:
                self.screen.finish(self._prompt, "", 0)
                raise EndOfInput
            key = "delete"
        if key in BACKSPACES:
            if pos:
                del buf[pos - 1]
                self._pos -= 1
        elif key == "delete":
            if pos < len(buf):
                del buf[pos]
        elif key in ("left", "right", "home", "end", "word-left", "word-right"):
            self._pos = self._moved(key)
            if not self._stale:
                self.screen.move(self._prompt, "".join(buf), self._pos)
                return
        elif key == "kill-start":
            self._kill(0, pos)
        elif key == "kill-end":
            self._kill(pos, len(buf))
        elif key == "kill-word":
            self._kill(self._word_start(pos, unix=True), pos)
        elif key == "kill-word-right":
            self._kill(pos, self._moved("word-right"))
        elif key == "yank":
            buf[pos:pos] = list(self._killed)
            self._pos += len(self._killed)
        elif key == "clear":
            self.screen.clear_screen(self._prompt, "".join(buf), pos)
            return
        elif key == "\t":
            self._tab()
        elif len(key) == 1 and key >= " ":
            buf.insert(pos, key)
            self._pos += 1
            if self._pos == len(buf):
                self.screen.append(self._prompt, "".join(buf))
                return
        else:
            return  # an unbound key: nothing changed, nothing to draw
        self._redraw()

    def _redraw(self) -> None:
        self._stale = False
        self.screen.draw(self._current_prompt(), "".join(self._buf), self._pos)

    def _current_prompt(self) -> str:
        search = self._search
        if search is None:
            return self._prompt
        failed = "failed " if search.failed else ""
        return f"({failed}reverse-i-search)`{search.query}': "

    # --- moving and killing ------------------------------------------------------------------
    def _moved(self, key: str) -> int:
        pos, size = self._pos, len(self._buf)
        if key == "left":
            return max(0, pos - 1)
        if key == "right":
            return min(size, pos + 1)
        if key == "home":
            return 0
        if key == "end":
            return size
        if key == "word-left":
            return self._word_start(pos, unix=False)
        while pos < size and not self._buf[pos].isalnum():
            pos += 1
        while pos < size and self._buf[pos].isalnum():
            pos += 1
        return pos

    def _word_start(self, pos: int, unix: bool) -> int:
        """Ctrl-W deletes back to whitespace (readline's unix-word-rubout); Alt-B and
        Alt-Backspace stop at any non-alphanumeric."""
        def inside(ch: str) -> bool:
            return not ch.isspace() if unix else ch.isalnum()

        while pos and not inside(self._buf[pos - 1]):
            pos -= 1
        while pos and inside(self._buf[pos - 1]):
            pos -= 1
        return pos

    def _kill(self, start: int, end: int) -> None:
        if end > start:
            self._killed = "".join(self._buf[start:end])
            del self._buf[start:end]
            self._pos = start

    # --- bracketed paste ---------------------------------------------------------------------
    def _paste_char(self, key: str) -> bool:
        """Pasted text goes in as it is, Tab and control keys too; True when a pasted newline
        ends the line. A pasted CR LF is one newline. Escape sequences in a paste are dropped."""
        if key == "\n" and self._paste_cr:
            self._paste_cr = False
            return False
        self._paste_cr = key == "\r"
        if key in ENTER:
            return True
        if len(key) == 1:
            self._buf.insert(self._pos, key)
            self._pos += 1
            self._stale = True
        return False

    # --- history search ----------------------------------------------------------------------
    def _search_key(self, key: str) -> str | None:
        """A key during Ctrl-R; returns a key for the normal editor once the search ends."""
        search = self._search
        assert search is not None
        if key == "\x12":
            query = search.query or self._last_query  # Ctrl-R Ctrl-R: the last search again
            self._find(search, query, search.index - (1 if search.query else 0))
        elif key in BACKSPACES:
            self._find(search, search.query[:-1], len(self.history) - 1)
        elif key == "\x07":  # Ctrl-G: back to the line as it was
            self._buf, self._pos = search.saved
            self._search = None
            self._redraw()
        elif len(key) == 1 and key >= " ":
            self._find(search, search.query + key, search.index)
        else:
            self._search = None  # any other key takes the match, then does its own job
            self._hist_index = min(search.index, len(self.history))
            self._redraw()
            return key
        return None

    def _find(self, search: _Search, query: str, start: int) -> None:
        """The newest entry at or before start that holds query; the cursor on the match."""
        search.query = query
        search.failed = False
        if query:
            self._last_query = query
            for index in range(min(start, len(self.history) - 1), -1, -1):
                if query in self.history[index]:
                    search.index = index
                    line = self.history[index]
                    self._buf, self._pos = list(line), line.rfind(query)
                    break
            else:
                search.failed = True
        self._redraw()

    # --- Tab ----------------------------------------------------------------------------------
    def _tab(self) -> None:
        before = "".join(self._buf[:self._pos])
        token = _TOKEN.search(before)
        word = token.group(0) if token else ""
        if not word.strip():
            self._buf[self._pos:self._pos] = list("    ")  # Tab at a block line's start indents
            self._pos += 4
            return
        options = sorted(set(self.complete(word)))
        if not options:
            return
        common = options[0]
        for option in options[1:]:
            while not option.startswith(common):
                common = common[:-1]
        if len(common) > len(word):
            extra = common[len(word):]
            self._buf[self._pos:self._pos] = list(extra)
            self._pos += len(extra)
        elif len(options) > 1:
            self.screen.finish(self._prompt, "".join(self._buf), self._pos)
            self.write("  ".join(options) + "\r\n")

    # --- keys ---------------------------------------------------------------------------------
    def _key(self) -> str:
        """The next key: a character, or a name for an escape sequence ("up", "delete")."""
        while True:
            ch = self._next()
            if ch != "\x1b":
                return ch
            name = self._escape()
            if name == "paste-start":
                self._in_paste, self._paste_cr, self._line_pasted = True, False, True
            elif name == "paste-end":
                self._in_paste = False
                self._redraw()  # a paste is drawn once, when it is all in
            else:
                return name

    def _next(self) -> str:
        while True:
            item = self.read_key()
            if item is None:
                raise EndOfInput
            if not isinstance(item, Resize):
                return item
            self.screen.resize(item.cols, self._current_prompt(), "".join(self._buf),
                               self._pos)

    def _escape(self) -> str:
        first = self._next()
        if first not in ("[", "O"):
            return _META.get(first, "")
        seq = ""
        while True:
            ch = self._next()
            seq += ch
            if "\x40" <= ch <= "\x7e" or len(seq) > 8:
                break
        return _ESCAPES.get(seq, "")

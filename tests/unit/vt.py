"""A tiny xterm-like screen: enough of VT100 to check what the line editor draws.

It models what matters for wrapping: autowrap with xterm's pending-wrap state (a character in
the last column leaves the cursor there until the next printable character), double-width
characters that wrap whole, combining characters, scrolling at the bottom, and a resize that
truncates rows as xterm does. Sequences it does not know raise, so a stray escape is caught.
"""
from __future__ import annotations

import re
import unicodedata

_CSI = re.compile(r"\x1b\[(\??)([\d;]*)([A-Za-z@`~])")


def width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class Screen:
    def __init__(self, cols: int, rows: int = 24) -> None:
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0
        self.pending_wrap = False
        self.scrolled = 0  # rows that went off the top
        self.modes: set[str] = set()
        self.raw = ""

    # --- output --------------------------------------------------------------------------
    def feed(self, text: str) -> None:
        self.raw += text
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                match = _CSI.match(text, i)
                if not match:
                    raise AssertionError(f"unknown escape at {text[i:i + 10]!r}")
                self._csi(*match.groups())
                i = match.end()
                continue
            if ch == "\r":
                self.col, self.pending_wrap = 0, False
            elif ch == "\n":
                self._down()
            elif ch == "\x07":
                pass
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                raise AssertionError(f"raw control character {ch!r} sent to the terminal")
            else:
                self._put(ch)
            i += 1

    def _put(self, ch: str) -> None:
        w = width(ch)
        if w == 0:
            r, c = (self.row, self.col) if self.pending_wrap else (self.row, max(0, self.col - 1))
            self.grid[r][c] += ch
            return
        if self.pending_wrap or (self.col + w > self.cols and self.col > 0):
            self.col, self.pending_wrap = 0, False
            self._down()
        self.grid[self.row][self.col] = ch
        if w == 2 and self.col + 1 < self.cols:
            self.grid[self.row][self.col + 1] = ""
        if self.col + w >= self.cols:
            self.col, self.pending_wrap = self.cols - 1, True
        else:
            self.col += w

    def _down(self) -> None:
        self.pending_wrap = False
        if self.row == self.rows - 1:
            self.grid.pop(0)
            self.grid.append([" "] * self.cols)
            self.scrolled += 1
        else:
            self.row += 1

    def _csi(self, private: str, params: str, final: str) -> None:
        if private:
            if final in "hl":
                (self.modes.add if final == "h" else self.modes.discard)(params)
                return
            raise AssertionError(f"unknown private mode ?{params}{final}")
        n = int(params) if params.isdigit() else 1
        self.pending_wrap = False
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "K":
            self.grid[self.row][self.col:] = [" "] * (self.cols - self.col)
        elif final == "J":
            if params == "2":
                self.grid = [[" "] * self.cols for _ in range(self.rows)]
            else:
                self.grid[self.row][self.col:] = [" "] * (self.cols - self.col)
                for r in range(self.row + 1, self.rows):
                    self.grid[r] = [" "] * self.cols
        elif final == "H":
            parts = [int(p) for p in params.split(";") if p] if params else []
            self.row = (parts[0] - 1) if parts else 0
            self.col = (parts[1] - 1) if len(parts) > 1 else 0
        else:
            raise AssertionError(f"unknown CSI {params}{final}")

    # --- the window ---------------------------------------------------------------------------
    def resize(self, cols: int) -> None:
        """xterm: rows are cut or padded, nothing re-wraps; the cursor stays on its row."""
        self.grid = [(r + [" "] * cols)[:cols] for r in self.grid]
        self.cols = cols
        self.col = min(self.col, cols - 1)
        self.pending_wrap = False

    # --- reading it back ----------------------------------------------------------------------
    def line(self, row: int) -> str:
        return "".join(self.grid[row]).rstrip()

    def lines(self) -> list[str]:
        text = [self.line(r) for r in range(self.rows)]
        while text and not text[-1]:
            text.pop()
        return text

    @property
    def cursor(self) -> tuple[int, int]:
        return self.row, self.col

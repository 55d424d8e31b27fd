"""Drawing one edited line on a terminal of known width, over as many rows as it takes.

The editor breaks rows itself (CR LF at the width) instead of leaving long lines to the
terminal's autowrap. Most terminals re-wrap soft-wrapped rows when the window changes width
and some (xterm) do not; hard rows stay where they were on both when the window widens, and on
xterm when it narrows, so after a resize the editor still knows how many rows to go up to find
its prompt. (A terminal that re-wraps a narrowed window pushes the rows down; the editor then
goes up too little, which leaves a stale row above the prompt but never erases output.)

The placement model is xterm's, which the others follow:
- a character that fills the last column leaves the cursor there with a wrap pending;
- a double-width character that does not fit at the end of a row goes to the next row;
- combining characters take no cell.
Control characters in the line (pasted tabs) are shown in caret notation, `^I`.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable


def shown(ch: str) -> str:
    """What the terminal is sent for ch: itself, or ^X for a control character."""
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return "^" + chr(code ^ 0x40)
    return ch


def cell_width(ch: str) -> int:
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return 2
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class Layout:
    """Where each character of prompt + text lands: (row, col) from the prompt's first cell."""

    def __init__(self, prompt: str, text: str, cols: int) -> None:
        self.cols = max(1, cols)
        self.chars = prompt + text
        self.prompt_len = len(prompt)
        self.starts: list[tuple[int, int]] = []
        row = col = 0
        for ch in self.chars:
            width = cell_width(ch)
            if width and col + width > self.cols and col > 0:
                row, col = row + 1, 0
            self.starts.append((row, col))
            col += width
        self.filled = col >= self.cols  # the last row is full: the next cell is a new row
        self.end = (row + 1, 0) if self.filled else (row, col)

    def cursor(self, pos: int) -> tuple[int, int]:
        """The cell the cursor is on for text position pos: the character it is before."""
        index = self.prompt_len + pos
        if index >= len(self.chars):
            return self.end
        row, col = self.starts[index]
        return (row + 1, 0) if col >= self.cols else (row, col)

    def rows_text(self) -> str:
        """prompt + text as the terminal is sent it: rows ended by CR LF, each row's tail
        cleared where the row is short (a full row pends a wrap, and clearing would eat its
        last character)."""
        out: list[str] = []
        row = used = 0
        for ch, (r, c) in zip(self.chars, self.starts, strict=True):
            if r > row:
                out.append(("\x1b[K" if used < self.cols else "") + "\r\n")
                row = r
            out.append(shown(ch))
            used = c + cell_width(ch)
        if self.filled:
            out.append("\r\n")  # settle the pending wrap: the cursor is where the model says
        return "".join(out)


class Renderer:
    """Keeps track of the row the cursor is on, relative to the row where the prompt starts."""

    def __init__(self, write: Callable[[str], None], cols: int = 80) -> None:
        self.write = write
        self.cols = max(1, cols)
        self.row = 0

    def draw(self, prompt: str, text: str, pos: int) -> None:
        """Redraw prompt and text from the prompt's first row and put the cursor at pos."""
        self._draw(self.row, prompt, text, pos)

    def move(self, prompt: str, text: str, pos: int) -> None:
        """Only the cursor moved: take it there without redrawing the line."""
        row, col = Layout(prompt, text, self.cols).cursor(pos)
        vertical = f"\x1b[{self.row - row}A" if self.row > row else \
            f"\x1b[{row - self.row}B" if row > self.row else ""
        self.write(vertical + "\r" + (f"\x1b[{col}C" if col else ""))
        self.row = row

    def resize(self, cols: int, prompt: str, text: str, pos: int) -> None:
        """The window changed width: redraw the line, wrapped for the new width."""
        cols = max(1, cols)
        if cols != self.cols:
            self.cols = cols
            self._draw(self.row, prompt, text, pos)

    def append(self, prompt: str, text: str) -> None:
        """The last character of text was just typed at the end: echo it, or redraw."""
        before = Layout(prompt, text[:-1], self.cols)
        after = Layout(prompt, text, self.cols)
        if after.starts[-1] != before.end or self.row != before.end[0]:
            self.draw(prompt, text, len(text))
            return
        self.write(shown(text[-1]) + ("\r\n" if after.filled else ""))
        self.row = after.end[0]

    def finish(self, prompt: str, text: str, pos: int) -> None:
        """Leave the line: the cursor goes below its last row, at column 0, for what follows."""
        layout = Layout(prompt, text, self.cols)
        down = layout.end[0] - layout.cursor(pos)[0]
        moves = f"\x1b[{down}B" if down > 0 else ""
        # A line that filled its last row already put the cursor on a fresh one.
        self.write(moves + ("\r" if layout.filled else "\r\n"))
        self.row = 0

    def clear_screen(self, prompt: str, text: str, pos: int) -> None:
        self.write("\x1b[H\x1b[2J")
        self._draw(0, prompt, text, pos)

    def _draw(self, up: int, prompt: str, text: str, pos: int) -> None:
        layout = Layout(prompt, text, self.cols)
        out = [f"\x1b[{up}A" if up > 0 else "", "\r", layout.rows_text(),
               "\x1b[J"]  # whatever the last drawing left below
        row, col = layout.cursor(pos)
        if (row, col) != layout.end:  # typing at the end leaves the cursor where it belongs
            if layout.end[0] > row:
                out.append(f"\x1b[{layout.end[0] - row}A")
            out.append("\r" + (f"\x1b[{col}C" if col else ""))
        self.write("".join(out))
        self.row = row

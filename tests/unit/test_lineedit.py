"""The console's line editor against scripted keystrokes, drawn on a small xterm-like screen.

Each test types keys into a real LineEditor whose output goes to tests/unit/vt.py's Screen, and
checks what a person would see: the rows, where the cursor is, and the line handed back.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest
from vt import Screen

from lager.console.lineedit import (
    HISTORY_LIMIT,
    EndOfInput,
    LineEditor,
    LineInterrupted,
    Resize,
)

LEFT, RIGHT, UP, DOWN = "\x1b[D", "\x1b[C", "\x1b[A", "\x1b[B"
HOME, END, DELETE = "\x1b[H", "\x1b[F", "\x1b[3~"
CTRL_LEFT, ALT_B, ALT_F = "\x1b[1;5D", "\x1bb", "\x1bf"
PASTE, PASTED = "\x1b[200~", "\x1b[201~"
CTRL = {c: chr(ord(c) - 64) for c in "ACDEGKLNPRUWY"}
BACKSPACE = "\x7f"


class Check:
    """A point in the keystrokes where the test looks at the screen."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn


class Term:
    def __init__(self, cols: int = 20, rows: int = 12, history: tuple[str, ...] = (),
                 completions: dict[str, list[str]] | None = None) -> None:
        self.screen = Screen(cols, rows)
        self.keys: deque[str | Resize | Check] = deque()
        self.completions = completions or {}
        self.asked: list[str] = []
        self.editor = LineEditor(self._read, self.screen.feed, self._complete, cols)
        self.editor.history = list(history)

    def _complete(self, word: str) -> list[str]:
        self.asked.append(word)
        return self.completions.get(word, [])

    def _read(self) -> str | Resize | None:
        while self.keys:
            item = self.keys.popleft()
            if isinstance(item, Check):
                item.fn()
                continue
            if isinstance(item, Resize):
                self.screen.resize(item.cols)  # the window changes, then the editor hears of it
            return item
        return None

    def feed(self, *keys: str | Resize | Check) -> None:
        for key in keys:
            self.keys.extend(key if isinstance(key, str) else [key])

    def line(self, *keys: str | Resize | Check, prompt: str = ">>> ") -> str:
        self.feed(*keys)
        return self.editor.read_line(prompt)

    def partial(self, *keys: str | Resize | Check, prompt: str = ">>> ") -> None:
        """Type keys without ending the line, leaving the screen as it is mid-edit."""
        self.feed(*keys)
        with pytest.raises(EndOfInput):
            self.editor.read_line(prompt)

    def view(self, lines: list[str], cursor: tuple[int, int]) -> Check:
        def check() -> None:
            assert self.screen.lines() == lines
            assert self.screen.cursor == cursor
        return Check(check)


ALPHA = "abcdefghijklmnopqrstuvwxyz0123"  # 30 characters


def test_a_line_comes_back_and_goes_into_history() -> None:
    term = Term()
    assert term.line("1+1\r") == "1+1"
    assert term.screen.lines() == [">>> 1+1"] and term.screen.cursor == (1, 0)
    assert term.line("\r") == "" and term.line("1+1\r") == "1+1"
    assert term.editor.history == ["1+1"]  # no blanks, no repeats in a row


def test_a_long_line_wraps_at_the_width_and_enter_leaves_below_it() -> None:
    term = Term(cols=20)
    assert term.line(ALPHA, term.view([">>> abcdefghijklmnop", "qrstuvwxyz0123"], (1, 14)),
                     "\r") == ALPHA
    assert term.screen.cursor == (2, 0)


def test_a_line_that_fills_its_row_exactly() -> None:
    term = Term(cols=20)
    sixteen = ALPHA[:16]
    term.line(sixteen, term.view([">>> " + sixteen], (1, 0)),
              "X", term.view([">>> " + sixteen, "X"], (1, 1)),
              BACKSPACE, term.view([">>> " + sixteen], (1, 0)),
              BACKSPACE, term.view([">>> " + sixteen[:-1]], (0, 19)),
              "p\r")
    assert term.screen.cursor == (1, 0)  # no blank row after a full one
    term.screen.feed("out\r\n")
    assert term.screen.lines() == [">>> " + sixteen, "out"]


def test_editing_in_the_middle_of_a_wrapped_line() -> None:
    term = Term(cols=20)
    line = term.line(ALPHA, LEFT * 20, term.view([">>> abcdefghijklmnop", "qrstuvwxyz0123"],
                                                  (0, 14)),
                     "XY", term.view([">>> abcdefghijXYklmn", "opqrstuvwxyz0123"], (0, 16)),
                     CTRL["A"], term.view([">>> abcdefghijXYklmn", "opqrstuvwxyz0123"], (0, 4)),
                     CTRL["E"], term.view([">>> abcdefghijXYklmn", "opqrstuvwxyz0123"], (1, 16)),
                     HOME, DELETE, END, BACKSPACE,
                     term.view([">>> bcdefghijXYklmno", "pqrstuvwxyz012"], (1, 14)), "\r")
    assert line == "bcdefghijXYklmnopqrstuvwxyz012"


def test_deleting_back_across_the_wrap_clears_the_row_below() -> None:
    term = Term(cols=20)
    term.partial(ALPHA[:18], term.view([">>> " + ALPHA[:16], ALPHA[16:18]], (1, 2)),
                 BACKSPACE * 3, term.view([">>> " + ALPHA[:15]], (0, 19)))


def test_a_line_spanning_three_rows_and_cursor_moves_between_them() -> None:
    term = Term(cols=12)
    text = ALPHA[:26]
    term.partial(text, term.view([">>> abcdefgh", "ijklmnopqrst", "uvwxyz"], (2, 6)),
                 LEFT * 7, term.view([">>> abcdefgh", "ijklmnopqrst", "uvwxyz"], (1, 11)),
                 LEFT * 12, term.view([">>> abcdefgh", "ijklmnopqrst", "uvwxyz"], (0, 11)),
                 "_", term.view([">>> abcdefg_", "hijklmnopqrs", "tuvwxyz"], (1, 0)))


def test_double_width_characters_wrap_whole() -> None:
    term = Term(cols=10)
    term.partial("a日本語", term.view([">>> a日本", "語"], (1, 2)),
                 LEFT, term.view([">>> a日本", "語"], (1, 0)),
                 LEFT, term.view([">>> a日本", "語"], (0, 7)),
                 "xy", term.view([">>> a日xy", "本語"], (1, 0)))


def test_control_characters_show_in_caret_notation() -> None:
    term = Term(cols=20)
    assert term.line(PASTE, "a\tb", PASTED, term.view([">>> a^Ib"], (0, 8)), "\r") == "a\tb"


def test_narrowing_the_window_rewraps_the_line() -> None:
    term = Term(cols=40)
    term.screen.feed("earlier output\r\n")
    line = term.line(ALPHA, term.view(["earlier output", ">>> " + ALPHA], (1, 34)),
                     Resize(20),
                     term.view(["earlier output", ">>> abcdefghijklmnop", "qrstuvwxyz0123"],
                               (2, 14)),
                     "!", term.view(["earlier output", ">>> abcdefghijklmnop",
                                     "qrstuvwxyz0123!"], (2, 15)), "\r")
    assert line == ALPHA + "!"


def test_widening_the_window_joins_the_rows() -> None:
    term = Term(cols=20)
    term.screen.feed("earlier output\r\n")
    term.partial(ALPHA, LEFT * 5,
                 term.view(["earlier output", ">>> abcdefghijklmnop", "qrstuvwxyz0123"], (2, 9)),
                 Resize(50), term.view(["earlier output", ">>> " + ALPHA], (1, 29)))


def test_resizes_in_a_row_and_inside_an_escape_sequence() -> None:
    term = Term(cols=30)
    term.screen.feed("earlier output\r\n")
    term.partial(ALPHA, Resize(15), Resize(25), "\x1b", Resize(12), "[D",
                 # xterm cuts rows at a narrower width rather than re-wrapping them
                 term.view(["earlier outp", ">>> abcdefgh", "ijklmnopqrst", "uvwxyz0123"],
                           (3, 9)))


def test_ctrl_w_deletes_the_word_before_the_cursor_and_ctrl_y_yanks_it() -> None:
    term = Term(cols=40)
    line = term.line("x = foo(bar.baz)  ", CTRL["W"], term.view([">>> x ="], (0, 8)),
                     CTRL["W"], CTRL["W"], term.view([">>>"], (0, 4)),
                     "y = ", CTRL["Y"], "\r")
    assert line == "y = x "


def test_ctrl_u_kills_to_the_start_and_ctrl_k_to_the_end() -> None:
    term = Term(cols=40)
    assert term.line("print(x)", LEFT * 3, CTRL["U"], term.view([">>> (x)"], (0, 4)),
                     "len", "\r") == "len(x)"
    assert term.line("abc def", LEFT * 4, CTRL["K"], "\r") == "abc"


def test_word_moves() -> None:
    term = Term(cols=40)
    assert term.line("one two.three", CTRL_LEFT, "X", ALT_B, ALT_B, "Y", "\r") == \
        "one Ytwo.Xthree"
    assert term.line("one two", ALT_B, "X", HOME, ALT_F, "Y", "\r") == "oneY Xtwo"
    assert term.line("one two", HOME, "\x1bd", "\r") == " two"  # Alt-D kills the next word
    assert term.line("one two", "\x1b\x7f", "\r") == "one "  # Alt-Backspace the last one


def test_ctrl_r_finds_the_newest_match_and_enter_runs_it() -> None:
    term = Term(cols=60, history=("read_adcs()", "x = 1", "readings['adc1']", "y = 2"))
    line = term.line(CTRL["R"], term.view(["(reverse-i-search)`':"], (0, 22)),
                     "rea", term.view(["(reverse-i-search)`rea': readings['adc1']"], (0, 25)),
                     CTRL["R"], term.view(["(reverse-i-search)`rea': read_adcs()"], (0, 25)),
                     "\r")
    assert line == "read_adcs()"
    assert term.screen.lines() == [">>> read_adcs()"] and term.screen.cursor == (1, 0)


def test_ctrl_r_then_an_editing_key_keeps_the_match_to_edit() -> None:
    term = Term(cols=60, history=("x = 1", "y = 2"))
    line = term.line(CTRL["R"], "x =", CTRL["E"], term.view([">>> x = 1"], (0, 9)), "0\r")
    assert line == "x = 10"
    # Up from a search match goes on from where the match was.
    term = Term(cols=60, history=("a", "x = 1", "y = 2"))
    assert term.line(CTRL["R"], "x", UP, "\r") == "a"


def test_ctrl_r_without_a_match_says_so_and_ctrl_g_restores_the_line() -> None:
    term = Term(cols=60, history=("x = 1",))
    line = term.line("abc", CTRL["R"], "zz",
                     term.view(["(failed reverse-i-search)`zz': abc"], (0, 34)),
                     BACKSPACE, BACKSPACE, "x", term.view(["(reverse-i-search)`x': x = 1"], (0, 23)),
                     CTRL["G"], term.view([">>> abc"], (0, 7)), "\r")
    assert line == "abc"


def test_ctrl_r_twice_on_an_empty_search_repeats_the_last_one() -> None:
    term = Term(cols=60, history=("x = 1", "y = 2", "x = 3"))
    assert term.line(CTRL["R"], "x", "\r") == "x = 3"
    assert term.line(CTRL["R"], CTRL["R"], CTRL["R"], "\r") == "x = 1"


def test_ctrl_r_match_longer_than_the_window_wraps() -> None:
    long = "value = " + ALPHA
    term = Term(cols=20, history=(long,))
    term.partial(CTRL["R"], "v", term.view(["(reverse-i-search)`v", "': value = abcdefghi",
                                            "jklmnopqrstuvwxyz012", "3"], (2, 12)),
                 CTRL["E"], term.view([">>> value = abcdefgh", "ijklmnopqrstuvwxyz01", "23"],
                                     (2, 2)))


def test_ctrl_c_in_a_search_drops_the_line() -> None:
    term = Term(cols=60, history=("x = 1",))
    with pytest.raises(LineInterrupted):
        term.line(CTRL["R"], "x", "\x03")


def test_history_up_and_down_keep_the_line_being_typed() -> None:
    term = Term(cols=40, history=("a = 1", "b = 2"))
    line = term.line("new", UP, term.view([">>> b = 2"], (0, 9)), UP, UP,
                     term.view([">>> a = 1"], (0, 9)), DOWN, DOWN, term.view([">>> new"], (0, 7)),
                     CTRL["P"], CTRL["N"], "!\r")
    assert line == "new!"


def test_history_is_capped() -> None:
    term = Term()
    for n in range(HISTORY_LIMIT + 5):
        term.line(f"{n}\r")
    assert len(term.editor.history) == HISTORY_LIMIT and term.editor.history[-1] == \
        str(HISTORY_LIMIT + 4)


def test_bracketed_paste_is_taken_literally() -> None:
    term = Term(cols=40, completions={"re": ["read_adcs(", "readings"]})
    line = term.line(PASTE, "re\t\x03\x15\x17x", PASTED, "\r")
    assert line == "re\t\x03\x15\x17x"
    assert term.asked == []  # no completion inside a paste
    assert "2004" in term.screen.modes  # the editor asked the terminal to bracket pastes


def test_a_pasted_block_comes_back_line_by_line() -> None:
    term = Term(cols=40)
    term.feed(PASTE, "for i in x:\r\n    print(i)\rprint('done')", PASTED)
    assert term.line() == "for i in x:" and term.editor.from_paste
    assert term.line(prompt="... ") == "    print(i)" and term.editor.from_paste
    assert term.line("\r", prompt="... ") == "print('done')" and term.editor.from_paste
    assert term.line("1\r") == "1" and not term.editor.from_paste
    assert term.screen.lines() == [">>> for i in x:", "...     print(i)", "... print('done')",
                                   ">>> 1"]


def test_a_long_paste_is_drawn_wrapped() -> None:
    term = Term(cols=20)
    term.partial("x = ", PASTE, ALPHA, PASTED,
                 term.view([">>> x = abcdefghijkl", "mnopqrstuvwxyz0123"], (1, 18)))


def test_tab_completes_the_common_part_then_lists_the_choices() -> None:
    term = Term(cols=40, completions={"re": ["read_adcs(", "readings"],
                                      "read": ["read_adcs(", "readings"]})
    line = term.line("x = re", "\t", term.view([">>> x = read"], (0, 12)),
                     "\t", term.view([">>> x = read", "read_adcs(  readings", ">>> x = read"],
                                     (2, 12)), "ings\r")
    assert line == "x = readings"
    assert Term(cols=40).line("\t", "pass\r") == "    pass"  # Tab on an empty line indents


def test_ctrl_c_drops_the_line_and_ctrl_d_ends_input() -> None:
    term = Term(cols=20)
    with pytest.raises(LineInterrupted):
        term.line("abc", "\x03")
    assert term.screen.lines() == [">>> abc^C"] and term.screen.cursor == (1, 0)
    with pytest.raises(EndOfInput):
        term.line(CTRL["D"])
    assert term.line("abc", LEFT, LEFT, CTRL["D"], "\r") == "ac"  # mid-line: delete


def test_ctrl_l_clears_the_screen_and_keeps_the_line() -> None:
    term = Term(cols=20)
    term.screen.feed("a\r\nb\r\nc\r\n")
    term.partial("x = 1", CTRL["L"], term.view([">>> x = 1"], (0, 9)))


def test_unknown_keys_change_nothing() -> None:
    term = Term(cols=20)
    assert term.line("ab", "\x1b[99~", "\x1bz", "\x07", "\x1b[5;9X", "c\r") == "abc"


def test_wrapping_at_the_bottom_of_the_screen_scrolls_and_still_edits() -> None:
    term = Term(cols=10, rows=3)
    term.screen.feed("1\r\n2\r\n")
    line = term.line(ALPHA[:20], term.view([">>> abcdef", "ghijklmnop", "qrst"], (2, 4)),
                     LEFT * 10, "_", term.view([">>> abcdef", "ghij_klmno", "pqrst"], (1, 5)),
                     "\r")
    assert line == "abcdefghij_klmnopqrst" and term.screen.cursor == (2, 0)

"""The benches' result table: one row a measurement, with its baseline from the same run."""
from __future__ import annotations

from collections.abc import Sequence


def print_table(rows: Sequence[tuple[str, str, str]]) -> None:
    """Rows of (what, measured, baseline), the first column as wide as its longest entry."""
    width = max(len(row[0]) for row in rows)
    print(f"{'what'.ljust(width)}  {'measured':>10}  baseline (same run)")
    for what, value, baseline in rows:
        print(f"{what.ljust(width)}  {value:>10}  {baseline}")

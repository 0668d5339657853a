"""Printing an Arrow table for a person: the sql command and the demo share it."""

from __future__ import annotations


def format_table(table, limit: int = 50) -> str:
    import pandas as pd

    with pd.option_context("display.max_columns", 20, "display.width", 160, "display.max_colwidth", 60):
        frame = table.slice(0, limit).to_pandas()
        more = f"\n({table.num_rows} rows, {limit} shown)" if table.num_rows > limit else f"\n({table.num_rows} rows)"
        return frame.to_string(index=False) + more

"""Tables that never cut a word: columns when whole words fit the terminal, else one block per
row (a table squeezed into 80 columns printed "public.mess / ages")."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# A table's frame: one bar before each column and one at the end, a space either side of cells.
_FRAME_PER_COLUMN, _FRAME_END = 3, 1


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def print_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print `rows` under `headers`, as a table if it fits the terminal, else as blocks."""
    # Made now, not at import, so the width follows the terminal (or COLUMNS).
    console = Console(highlight=False)
    console.print(table_or_blocks(title, headers, rows, console.width))


def table_or_blocks(
    title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]], width: int
) -> RenderableType:
    """A table whose columns hold their longest word when they fit in `width`, else one block
    per row (the first cell, then `header  value` lines)."""
    widths = [
        max([len(header), *(_longest_word(row[i]) for row in rows)])
        for i, header in enumerate(headers)
    ]
    if sum(widths) + _FRAME_PER_COLUMN * len(widths) + _FRAME_END <= width:
        table = Table(title=title, title_justify="left")
        for header, column_width in zip(headers, widths, strict=True):
            table.add_column(header, min_width=column_width, overflow="fold")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        return table
    parts: list[RenderableType] = [Text(title)] if title else []
    pad = max(len(header) for header in headers[1:])
    for row in rows:
        lines = [row[0]] + [
            f"  {header:<{pad}}  {cell}" for header, cell in zip(headers[1:], row[1:], strict=True)
        ]
        parts.append(Text("\n".join(lines)))
    return Group(*parts)

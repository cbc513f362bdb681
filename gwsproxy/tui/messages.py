"""Messages the inspector's widgets post to the app (they never reach into each other)."""

from __future__ import annotations

from textual.message import Message

from gwsproxy.tui.model import Row


class NeedVerdicts(Message):
    """Rows on screen whose verdict needs their body; the app judges them in a worker."""

    def __init__(self, rows: list[Row]) -> None:
        super().__init__()
        self.rows = rows


class JumpTo(Message):
    """Select this row in the pair table."""

    def __init__(self, row: Row) -> None:
        super().__init__()
        self.row = row

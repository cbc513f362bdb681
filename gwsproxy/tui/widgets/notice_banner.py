"""A banner over the list for what is wrong with a capture: damage, a torn tail, notices."""

from __future__ import annotations

from textual.widgets import Static

MAX_LINES = 3


class NoticeBanner(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.lines: list[str] = []
        self.display = False

    def show(self, lines: list[str]) -> None:
        """Show these lines (hidden when there are none); more than a few are summarised."""
        self.lines = list(lines)
        self.display = bool(lines)
        shown = [f"⚠ {line}" for line in lines[:MAX_LINES]]
        if len(lines) > MAX_LINES:
            shown.append(f"  … and {len(lines) - MAX_LINES} more (see `gwsproxy info FILE`)")
        self.update("\n".join(shown))

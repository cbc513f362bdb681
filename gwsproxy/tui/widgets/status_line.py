"""One line between the list and the detail: how many rows, loading progress, what is on."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusLine(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.shown = 0
        self.total = 0
        self.progress = ""  # e.g. "loading 45%" or "judging 1,234/9,000"
        self.problems: tuple[str, ...] = ()
        self.flags: list[str] = []
        self.files = ""

    def set(self, **values: object) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.update(self._text(), layout=False)

    def _text(self) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        if self.shown == self.total:
            t.append(f"{self.total:,} rows")
        else:
            t.append(f"{self.shown:,} of {self.total:,} rows")
        if self.progress:
            t.append(f" · {self.progress}", style="italic")
        for flag in self.flags:
            t.append(f" · {flag}", style="bold")
        for p in self.problems:
            t.append(f" · {p}", style="bold reverse")
        if self.files:
            t.append(f" · {self.files}", style="dim")
        return t

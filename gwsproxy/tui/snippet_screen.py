"""A pytest test for one pair, shown so it can be copied or saved without a clipboard."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static, TextArea


class SnippetScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("w", "save", "Save as test file"),
        Binding("y", "copy", "Copy again"),
    ]

    def __init__(self, code: str, filename: str) -> None:
        super().__init__()
        self.code = code
        self.filename = filename

    def compose(self) -> ComposeResult:
        with Vertical(id="snippet-box"):
            yield Static(
                f"pytest test for this pair (copied to the clipboard; w saves {self.filename})",
                id="snippet-title",
            )
            yield TextArea(self.code, read_only=True, show_line_numbers=True, id="snippet-code")
            yield Footer()

    def action_save(self) -> None:
        path = Path.cwd() / self.filename
        try:
            path.write_text(self.code)
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror}", severity="error")
            return
        self.notify(f"wrote {path}")

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.code)
        self.notify("copied to the clipboard (if the terminal allows it)")

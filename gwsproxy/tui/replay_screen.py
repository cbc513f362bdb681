"""The replay dialogs: where to replay the open captures (target, user, password, ignored keys),
and whether to stop a replay that is running.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from gwsproxy.errors import url_problem
from gwsproxy.tui.replays import ReplayRequest, ignore_text, parse_ignore

HINT = "Enter: replay · Tab: next field · Esc: cancel"


class ReplayScreen(ModalScreen[ReplayRequest | None]):
    """Ask where to replay; dismissed with the request, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, last: ReplayRequest, pairs: int | None, files: list[str]) -> None:
        super().__init__()
        self.last = last
        count = f"the {pairs:,} pairs" if pairs is not None else "the pairs"
        self.what = f"{count} of {', '.join(files)}"

    def compose(self) -> ComposeResult:
        last = self.last
        with Vertical(id="replay-box") as box:
            box.border_title = "Replay against a GWS"
            yield Static(
                f"Re-sends {self.what} and compares what each changes with the recording.",
                id="replay-about",
            )
            yield _field("target", Input(last.target, id="replay-target", compact=True))
            yield _field(
                "user",
                Input(
                    last.user or "",
                    placeholder="each agent of the capture as itself",
                    id="replay-user",
                    compact=True,
                ),
            )
            yield _field(
                "password", Input(last.password, password=True, id="replay-password", compact=True)
            )
            yield _field(
                "ignore",
                Input(
                    ignore_text(last.ignore),
                    placeholder="key regexes not compared, e.g. ^Last Timestamp$",
                    id="replay-ignore",
                    compact=True,
                ),
            )
            yield Static("", id="replay-error")
            yield Static(HINT, id="replay-hint")

    def on_mount(self) -> None:
        target = self.query_one("#replay-target", Input)
        target.focus()
        target.cursor_position = len(target.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._problem(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        target = self.query_one("#replay-target", Input).value.strip()
        problem = url_problem(target)
        if problem:
            self._problem(problem, "#replay-target")
            return
        ignore, problem = parse_ignore(self.query_one("#replay-ignore", Input).value)
        if problem:
            self._problem(problem, "#replay-ignore")
            return
        user = self.query_one("#replay-user", Input).value.strip() or None
        password = self.query_one("#replay-password", Input).value
        request = ReplayRequest(target.rstrip("/"), user, password, ignore, self.last.access)
        self.dismiss(request)

    def _problem(self, text: str | None, field: str | None = None) -> None:
        error = self.query_one("#replay-error", Static)
        error.update(text or "")
        error.display = bool(text)
        if field:
            self.query_one(field, Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


def _field(label: str, widget: Input) -> Horizontal:
    return Horizontal(Label(label, classes="replay-label"), widget, classes="replay-field")


class StopReplayScreen(ModalScreen[bool]):
    """Ask before stopping a running replay: True stops it."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Stop it"),
        Binding("n,escape", "answer(False)", "Go on"),
    ]

    def __init__(self, target: str, progress: str) -> None:
        super().__init__()
        self.target = target
        self.progress = progress

    def compose(self) -> ComposeResult:
        with Vertical(id="replay-stop") as box:
            box.border_title = "Stop the replay?"
            yield Static(f"{self.progress} against {self.target}.")
            yield Static("y or Enter: stop it · n or Esc: let it finish", id="replay-hint")

    def action_answer(self, stop: bool) -> None:
        self.dismiss(stop)

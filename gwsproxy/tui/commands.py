"""Command palette entries: filter by verdict, playback, replay, changed-only, export, help."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from gwsproxy.verdict import VerdictName

if TYPE_CHECKING:
    from gwsproxy.tui.app import InspectorApp


class InspectorCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: InspectorApp = self.app  # type: ignore[assignment]
        out: list[tuple[str, Callable[[], object], str]] = []
        for v in VerdictName:
            out.append(
                (
                    f"Filter by verdict: {v}",
                    partial(app.filter_verdict, v),
                    f"show only pairs judged {v} (verdict:{v.replace(' ', '-')})",
                )
            )
        out += [
            ("Clear the filter", partial(app.filter_verdict, None), "show every row"),
            ("Open playback", app.action_playback, "replay the listed rows in time order (p)"),
            (
                "Replay against a target…",
                app.action_replay,
                "re-send the open captures to a GWS and compare, pair by pair (r)",
            ),
            (
                "Filter: replay failures",
                partial(app.set_filter, "replay:fail"),
                "pairs whose last replay changed user data otherwise (replay:fail)",
            ),
            (
                "Toggle changed-only / all keys",
                app.action_changed_only,
                "what the Diff tab lists (d)",
            ),
            ("Export pair as JSON", app.action_export, "write pair-<id>.json here (e)"),
            ("Copy pytest snippet", app.action_snippet, "a test asserting this pair (c)"),
            (
                "Show / hide unsolicited and raw records",
                app.action_toggle_others,
                "rows that are not pairs (u)",
            ),
            ("Toggle dark / light theme", app.action_toggle_theme, "ctrl+t"),
            ("Help: keys and filter syntax", app.action_help, "? or F1"),
        ]
        return out

    async def discover(self) -> Hits:
        for name, command, help_text in self._commands():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, command, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, text=name, help=help_text)

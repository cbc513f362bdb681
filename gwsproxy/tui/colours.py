"""One meaning per colour: the component classes every widget uses to paint verdicts and outcomes.

The colours live once, in gwsproxy.tcss (`.verdict--*`, `.replay--*`), with light-theme variants.
"""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget

from gwsproxy.tui.pairs import UNREADABLE
from gwsproxy.verdict import OK, SIDE_EFFECT, VerdictName

VERDICT_CLASS = {v: "verdict--" + v.replace(" ", "-") for v in (*VerdictName, UNREADABLE)}
PENDING = "verdict--pending"  # a matched pair not judged yet: its status, dimmed
OTHER = "verdict--other"  # unsolicited notifications, raw records, notes
REPLAY_PASS = "replay--pass"  # a replayed pair changed user data as recorded
REPLAY_FAIL = "replay--fail"  # ... or did not
BOLD = Style(bold=True)
# A set, not a frozenset: what Textual types COMPONENT_CLASSES as.
COMPONENTS = {*VERDICT_CLASS.values(), PENDING, OTHER, REPLAY_PASS, REPLAY_FAIL}

# A key's outcome in a diff is painted like the verdict it leads to.
OUTCOME_VERDICT = {
    OK: VerdictName.APPLIED,
    VerdictName.COERCED: VerdictName.COERCED,
    VerdictName.NOT_APPLIED: VerdictName.NOT_APPLIED,
    SIDE_EFFECT: VerdictName.SIDE_EFFECTS,
}


def component_style(widget: Widget, name: str) -> Style:
    """A partial component style, cached until the stylesheet restyles the component (a theme
    change, a pseudo-class change): list rows ask for many on every paint."""
    current = getattr(widget, "_component_styles", {}).get(name)
    cache: dict = widget.__dict__.setdefault("_component_style_cache", {})
    hit = cache.get(name)
    if hit is not None and current is not None and hit[0] is current:
        return hit[1]
    style = widget.get_component_styles(name).partial_rich_style
    cache[name] = (current, style)
    return style


def verdict_style(widget: Widget, verdict: str | None) -> Style:
    """The partial rich style of a verdict, or of a pending one when None."""
    return component_style(widget, VERDICT_CLASS.get(verdict, PENDING) if verdict else PENDING)


def replay_style(widget: Widget, passed: bool) -> Style:
    return component_style(widget, REPLAY_PASS if passed else REPLAY_FAIL)


def outcome_style(widget: Widget, outcome: str) -> Style:
    verdict = OUTCOME_VERDICT.get(outcome)
    return verdict_style(widget, verdict) if verdict else Style()

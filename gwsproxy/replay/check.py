"""`gwsproxy check`: a CI gate on recorded verdicts. Each pair of the captures is judged (the
verdicts of `export`) and fails when its verdict is one the gate fails on; the result is a
`ReplayResult`, so that it prints and reports as `replay` does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Final

from gwsproxy.errors import GwsProxyError
from gwsproxy.record.indexing import UNREADABLE, judge_pair, verdict_name
from gwsproxy.replay.compare import Comparison, Mismatch
from gwsproxy.replay.regress import ReplayResult, outcome_of
from gwsproxy.report import FINDING_OUTCOMES, read_pairs
from gwsproxy.verdict import FAIL_ON, VerdictName, ignoring

VERDICTS: Final = (*(str(v) for v in VerdictName), UNREADABLE)


def fail_on(text: str) -> frozenset[str]:
    """`--fail-on`: verdicts separated by commas; `not-applied` and `not_applied` read as
    `not applied`. GwsProxyError for a name that is no verdict."""
    names = set()
    for item in text.split(","):
        name = " ".join(item.replace("-", " ").replace("_", " ").split()).lower()
        if not name:
            continue
        if name not in VERDICTS:
            raise GwsProxyError(
                f"--fail-on {item.strip()!r}: not a verdict ({', '.join(VERDICTS)})"
            )
        names.add(name)
    return frozenset(names)


def check(
    paths: Sequence[str], failing: Iterable[str] = FAIL_ON, ignore: Sequence[str] = ()
) -> ReplayResult:
    """Every pair of `paths`, in file order: passed unless its verdict is in `failing`. Keys
    matching an `ignore` regex are not judged (a pair coerced only there passes). CaptureError
    (a GwsProxyError) if a file cannot be read."""
    failing = frozenset(failing)
    patterns = [re.compile(p) for p in ignore]

    def ignored(key: object) -> bool:
        return any(p.search(str(key)) for p in patterns)

    started = time.monotonic()
    result = ReplayResult(suite="gwsproxy check")
    for path in paths:
        for summary, body, body_error in read_pairs(path):
            verdict = judge_pair(summary, body, body_error)
            if verdict is not None and patterns:
                verdict = ignoring(verdict, ignored)
            outcome = outcome_of(summary, body)
            name = verdict_name(verdict)
            if name not in failing:
                comparison = Comparison(outcome, outcome)
            else:
                changes = verdict.changes if verdict is not None else ()
                mismatches = tuple(
                    Mismatch(c.key, c.before, c.expected, c.after)
                    for c in changes
                    if c.outcome in FINDING_OUTCOMES
                )
                problem = name + (f" ({summary.get('error')})" if summary.get("error") else "")
                comparison = Comparison(outcome, outcome, mismatches, problem)
            result.comparisons.append(comparison)
            result.sources.append(path)
    result.elapsed = time.monotonic() - started
    return result

"""Verdicts: verdict.judge on 1,000-key user data, as a ratio to its 50 ms budget and to deepdiff.

Data: a 1,000-key before (strings, ints, floats, booleans, nulls, nested maps and lists); after
differs in ~50 keys (value and type changes, nested type changes, keys added and removed), and
the request writes 10 keys. Variants, each timed in blocks interleaved A,B,B,A,... per round:

  judge                    verdict.judge (per-key, type-aware comparison; what the TUI calls)
  counts                   verdict.counts (the list view's +added ~changed -removed)
  DeepDiff                 DeepDiff(before, after): a plain deepdiff of the same dicts
  DeepDiff v2 zip          DeepDiff(..., verbose_level=2, zip_ordered_iterables=True): what a
                           deepdiff-backed judge would have to run at least once per pair

Judged: judge best-of time / 50 ms budget <= 0.2 ("far under"); deepdiff / judge is informative
(> 1: judge is faster). Run: .venv/bin/python bench/bench_verdict.py [--smoke] [--rounds N]
"""

from __future__ import annotations

import random
import statistics
import traceback
from collections.abc import Callable
from typing import Any

from _common import calibrate, header, ms, parse_args, print_results, time_block, us, verdict
from deepdiff import DeepDiff

from gwsproxy import gws
from gwsproxy.verdict import VerdictName, judge
from gwsproxy.verdict import counts as verdict_counts

BUDGET = 0.050  # seconds for one judge of 1,000 keys
TARGET = 0.2  # judge must take at most this share of the budget


def user_data(keys: int, changed: int, requested: int, seed: int = 7) -> tuple[dict, dict, dict]:
    rng = random.Random(seed)
    before: dict[str, Any] = {}
    for i in range(keys):
        before[f"Key{i:04d}"] = rng.choice(
            [i, f"value-{i}", i / 3, True, None, {"n": i, "tags": ["a", str(i)]}, [i, i + 1]]
        )
    after = dict(before)
    for i, key in enumerate(rng.sample(sorted(before), changed)):
        value = after[key]
        if i % 5 == 0:
            after[key] = str(value)  # a type change (or a text change)
        elif i % 5 == 1:
            del after[key]
        elif i % 5 == 2:
            after[key + "-new"] = value
        elif isinstance(value, dict):
            after[key] = {**value, "tags": ["a", int(value["n"])]}  # a nested type change
        else:
            after[key] = [value]
    step = max(1, keys // requested)
    asked = {f"Key{i:04d}": f"asked-{i}" for i in range(0, keys, step)}
    after.update(asked)
    return before, after, asked


def took(seconds: float) -> str:
    return ms(seconds) if seconds >= 1e-3 else us(seconds)


def measure(variants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each variant per round, each calibrated on its own (~20 ms blocks),
    alternating the order every round so neither always runs first."""
    for fn in variants.values():
        fn()
    number = {name: calibrate(fn) for name, fn in variants.items()}
    names = list(variants)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(time_block(variants[name], number[name]))
    return out


def run(smoke: bool, rounds: int) -> list[list[str]]:
    keys, changed, requested = (50, 5, 2) if smoke else (1000, 50, 10)
    before, after, asked = user_data(keys, changed, requested)
    v = judge("matched", gws.UPDATE, "chat", asked, before, after)
    assert v.name == VerdictName.SIDE_EFFECTS, v.name
    print(f"data: {keys} keys, after {v.summary} vs before, {len(asked)} requested -> {v.name}")

    times = measure(
        {
            "judge": lambda: judge("matched", gws.UPDATE, "chat", asked, before, after),
            "counts": lambda: verdict_counts(before, after),
            "DeepDiff": lambda: DeepDiff(before, after),
            "DeepDiff v2 zip": lambda: DeepDiff(
                before, after, verbose_level=2, zip_ordered_iterables=True
            ),
        },
        rounds,
    )
    best = {name: min(t) for name, t in times.items()}
    share = best["judge"] / BUDGET
    rows = [
        [
            "judge",
            took(best["judge"]),
            f"{share:.3f} of 50 ms",
            f"<= {TARGET}",
            verdict(share, TARGET, smoke=smoke, higher_is_better=False),
        ]
    ]
    print(f"judge: best {ms(best['judge'])} = {share:.3f} of the 50 ms budget")
    for name in ("counts", "DeepDiff", "DeepDiff v2 zip"):
        # Per-round ratios (each round times both back to back), median over rounds.
        ratio = statistics.median(o / j for o, j in zip(times[name], times["judge"], strict=True))
        rel = f"{ratio:.3f}x judge" if name == "counts" else f"judge {ratio:.1f}x faster"
        print(f"{name}: best {us(best[name])}, {rel}")
        rows.append([name, took(best[name]), rel, "-", "info"])
    return rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    smoke = args.smoke
    rounds = args.rounds or (2 if smoke else 9)
    header("bench_verdict: judge on 1,000-key user data vs its budget and deepdiff", smoke)
    try:
        rows = run(smoke, rounds)
    except Exception:  # noqa: BLE001 - a benchmark reports its failure and still exits 0
        traceback.print_exc()
        rows = [["(failed)", "-", "-", "-", "ERROR"]]
    print_results(
        f"Verdicts on {'50' if smoke else '1,000'}-key user data (best of {rounds} rounds; "
        "ratios are medians of per-round ratios)",
        ["variant", "best time", "relative", "target", "result"],
        rows,
        smoke,
    )


if __name__ == "__main__":
    main()

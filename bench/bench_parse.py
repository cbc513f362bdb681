"""Notification parsing of the seed payloads, as a ratio to plain json.loads of the same bytes.

Target (issue): ratio = json.loads time / our time >= 0.8 for strict input, i.e. "the tolerant
path runs only on failure". Each seed is first turned into its strict-JSON form (lenient.loads,
then json.dumps: what a real server sends) and also wrapped as a one-message Bayeux batch.

  (a) lenient.loads(bytes)                               vs json.loads(bytes)
  (b) gws.parse_notification(lenient.loads(bytes).value) vs json.loads(bytes)
  (c) bayeux.parse_batch(batch) + parse_notification     vs json.loads(batch)
  (i) lenient.loads(original quirky seed), the repair path, vs json.loads(strict form):
      informational, no target.

Timing: the two sides alternate in ~2 ms blocks (A,B then B,A) for many rounds; the judged
ratio is best json.loads block / best our block (best-of-N: on a shared machine the best
block is the undisturbed one); the median of per-round ratios is printed alongside.
Run: .venv/bin/python bench/bench_parse.py [--smoke]
"""

from __future__ import annotations

import json

from _common import (
    header,
    interleave,
    parse_args,
    print_results,
    seeds,
    us,
    verdict,
)

from gwsproxy import bayeux, gws, lenient

TARGET = 0.8


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    smoke = args.smoke
    rounds = args.rounds or (3 if smoke else 201)
    number = 200 if smoke else None  # None: calibrated to ~2 ms per timed block
    header("bench_parse: notification parsing vs json.loads", smoke)

    rows = []
    for seed in seeds():
        strict = seed.strict
        batch = json.dumps([{"channel": seed.channel, "data": seed.value}]).encode()
        assert lenient.loads(strict).repairs == (), "strict form must take the fast path"
        assert gws.parse_notification(lenient.loads(strict).value) is not None

        def ours_loads(b: bytes = strict) -> object:
            return lenient.loads(b)

        def ours_notification(b: bytes = strict) -> object:
            return gws.parse_notification(lenient.loads(b).value)

        def ours_batch(b: bytes = batch) -> object:
            parsed = bayeux.parse_batch(b)
            return [gws.parse_notification(m) for m in parsed.messages]

        def repair(b: bytes = seed.raw) -> object:
            return lenient.loads(b)

        assert ours_batch()[0] is not None

        cases = [
            ("a", "lenient.loads", len(strict), strict, ours_loads, True),
            (
                "b",
                "lenient.loads + parse_notification",
                len(strict),
                strict,
                ours_notification,
                True,
            ),
            ("c", "parse_batch + parse_notification", len(batch), batch, ours_batch, True),
            ("i", "repair path (quirky original)", len(seed.raw), strict, repair, False),
        ]
        for tag, what, size, ref_bytes, fn, judged in cases:
            t = interleave(
                {"json.loads": lambda b=ref_bytes: json.loads(b), "ours": fn},
                rounds=rounds,
                number=number if judged else (max(1, number // 20) if number else None),
            )
            best = t.best_ratio("json.loads", "ours")
            paired = t.ratio("json.loads", "ours")
            mark = verdict(best, TARGET, smoke=smoke) if judged else "info"
            print(
                f"{seed.name} ({tag}) {what}: json.loads {us(t.best('json.loads'))}, "
                f"ours {us(t.best('ours'))}, ratio {best:.2f} "
                f"(median of per-round ratios {paired:.2f}) {mark}"
            )
            rows.append(
                [
                    seed.name.removesuffix(".txt"),
                    f"({tag}) {what}",
                    f"{size:,} B",
                    us(t.best("json.loads")),
                    us(t.best("ours")),
                    f"{best:.2f}",
                    f"{paired:.2f}",
                    f">= {TARGET}" if judged else "-",
                    mark,
                ]
            )

    print_results(
        f"Notification parsing vs json.loads (ratio = json.loads time / ours; best-of-{rounds} "
        "interleaved ~2 ms blocks per side; median of per-round ratios alongside)",
        [
            "seed",
            "path",
            "bytes",
            "json.loads",
            "ours",
            "ratio",
            "median ratio",
            "target",
            "result",
        ],
        rows,
        smoke,
    )


if __name__ == "__main__":
    main()

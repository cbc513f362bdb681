"""Shared helpers for the benchmarks in bench/: argument parsing (--smoke), interleaved
side-by-side timing with time.perf_counter, PASS/MISS verdicts, machine info, markdown tables.

House rules (bench/README.md): every figure that is judged is a RATIO of two variants measured
side by side in one run, interleaved A,B,B,A,... and summarised over several rounds; absolute
times are printed alongside only for information. Generated files go to a temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gwsproxy import bayeux, gws, lenient
from gwsproxy.record.core import Recording
from gwsproxy.record.events import ADVANCE, REQUEST, RESPONSE, Advance, Request, Response

SEED_FILES = ("seed_000_sms.txt", "seed_003_facebook.txt")


ROOT = Path(__file__).resolve().parent.parent


# ---- command line -------------------------------------------------------------------------------


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (seconds) that only checks the benchmark works; targets not judged",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default: per benchmark)"
    )
    return parser.parse_args(argv)


def header(title: str, smoke: bool) -> None:
    print(f"# {title}{' (smoke: tiny sizes, targets not judged)' if smoke else ''}")
    print(machine_line())
    print()


def tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ---- machine ------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count() or "?"),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_line() -> str:
    m = machine_info()
    return f"machine: {m['cpus']} CPUs, {m['cpu']}, {m['implementation']} {m['python']}, {m['os']}"


# ---- timing -------------------------------------------------------------------------------------


@contextlib.contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """Like timeit: no cyclic GC inside a timed block (micro-benchmarks only)."""
    was = gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_block(fn: Callable[[], Any], number: int, *, pause_gc: bool = True) -> float:
    """Seconds per call of fn, over `number` back-to-back calls."""
    with gc_paused(pause_gc):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number


def calibrate(fn: Callable[[], Any], target: float = 0.02) -> int:
    """How many calls of fn make a timed block of about `target` seconds."""
    n = 1
    while True:
        t = time_block(fn, n) * n
        if t >= target / 4 or n >= 1 << 22:
            return max(1, int(n * target / max(t, 1e-9)))
        n *= 4


@dataclass(slots=True)
class Timings:
    """Per-variant times of every round, in seconds per call (or per run)."""

    rounds: dict[str, list[float]] = field(default_factory=dict)

    def best(self, name: str) -> float:
        return min(self.rounds[name])

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])

    def ratio(self, reference: str, ours: str) -> float:
        """reference time / our time, as the median of per-round ratios. Each round times the
        two back to back, so a slow moment of the machine hits both; > 1 means ours is faster."""
        pairs = zip(self.rounds[reference], self.rounds[ours], strict=True)
        return statistics.median(r / o for r, o in pairs)

    def best_ratio(self, reference: str, ours: str) -> float:
        """Best reference time / best our time (best-of-N on each side)."""
        return self.best(reference) / self.best(ours)


def interleave(
    variants: dict[str, Callable[[], Any]],
    *,
    rounds: int,
    number: int | None = None,
    block: float = 0.002,
    pause_gc: bool = True,
    warmup: bool = True,
) -> Timings:
    """Time every variant once per round, alternating the order each round (A,B then B,A) so
    neither always runs first. `number` calls per timed block (None: calibrated per variant
    so a block lasts about `block` seconds). Short blocks and many rounds suit a shared
    machine: a block shorter than a scheduler slice is often not disturbed at all, and the
    best of many rounds finds such blocks for each variant."""
    names = list(variants)
    if warmup:
        for fn in variants.values():
            fn()
    numbers = {
        name: number if number is not None else calibrate(fn, block)
        for name, fn in variants.items()
    }
    out = Timings({name: [] for name in names})
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            out.rounds[name].append(time_block(variants[name], numbers[name], pause_gc=pause_gc))
    return out


def interleave_runs(
    variants: dict[str, Callable[[], float]], *, rounds: int
) -> dict[str, list[float]]:
    """Like interleave, for variants that time themselves (e.g. a whole load run) and return a
    rate or a duration: runs A,B,B,A,... and returns every value per variant."""
    names = list(variants)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            out[name].append(variants[name]())
    return out


# ---- verdicts and output ------------------------------------------------------------------------


def verdict(value: float, target: float, *, smoke: bool, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    if smoke:
        return "(smoke)"
    return "PASS" if ok else "MISS"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join(lines)


def print_results(title: str, headers: list[str], rows: list[list[Any]], smoke: bool) -> None:
    print()
    print(f"### {title}{' (smoke)' if smoke else ''}")
    print()
    print(f"_{machine_line()}_")
    print()
    print(markdown_table(headers, rows))
    sys.stdout.flush()


# ---- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seed:
    name: str
    raw: bytes  # the documentation sample as shipped, quirks and all
    value: dict  # what lenient.loads makes of it
    strict: bytes  # json.dumps of that value: what a real server sends
    media: str
    channel: str


def seeds() -> list[Seed]:
    out = []
    for filename in SEED_FILES:
        raw = resources.files("gwsproxy.data").joinpath(filename).read_bytes()
        parsed = lenient.loads(raw)
        assert isinstance(parsed, lenient.Parsed), filename
        note = gws.parse_notification(parsed.value)
        assert note is not None, filename
        media = gws.MEDIA_BY_NAME[note.media]
        strict = json.dumps(parsed.value).encode()
        out.append(Seed(filename, raw, parsed.value, strict, media.name, media.channel))
    return out


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory outside the repository, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"gwsproxy-{prefix}-") as d:
        yield Path(d)


# ---- synthetic GWS traffic and the addon's per-pair work, without mitmproxy ---------------------

AGENT = "agent1"
AUTH = "Basic YWdlbnQxOnBhc3N3b3Jk"  # agent1:password
SESSION = "5f1c0e2b9a7d4c3e8b6a1f0d2c4e6a8b"
CSRF = "9c2e4a6b8d0f1e3c5a7b9d1f"
CLIENT_ID = "1d8y1rzdkx6nzd1j2xhmmqdxg9b"
USER_AGENT = "Python/3.11 aiohttp/3.14.5"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One user-data request, its HTTP answer and the long-poll batch carrying its notification,
    as bytes and header lists the way mitmproxy hands them to the addon."""

    t: float
    path: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int
    answer_headers: list[tuple[str, str]]
    answer_body: bytes
    batch: bytes  # the long-poll response body: [{"channel": ..., "data": notification}]
    notification: bytes  # the data message's own JSON text inside the batch
    connect_body: bytes  # the long-poll request (a /meta/connect) that the batch answers
    request_fields: list[tuple[bytes, bytes]]  # the same headers as mitmproxy keeps them
    answer_fields: list[tuple[bytes, bytes]]


def _fields(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers]


CONNECT_PATH = bayeux.NOTIFICATIONS_PATH + "/connect"
BATCH_FIELDS = [(b"Content-Type", b"application/json")]


def _interaction_object(value: dict) -> tuple[str, dict]:
    for key, obj in value.items():
        if isinstance(obj, dict) and "id" in obj:
            return key, obj
    raise ValueError("seed has no interaction object")


def make_traffic(count: int, seed_list: list[Seed], *, interactions: int = 1000) -> list[Exchange]:
    return list(iter_traffic(count, seed_list, interactions=interactions))


def iter_traffic(
    count: int, seed_list: list[Seed], *, interactions: int = 1000
) -> Iterator[Exchange]:
    """`count` UpdateUserData exchanges on the seeds' interactions, with small per-pair changes:
    a different interaction id (cycling over `interactions` ids per seed, so before-snapshots
    are known after the first round), referenceId, UserData1/UserData2 values and timestamps.
    The notification carries the seed's whole user data with the update applied."""
    rng = random.Random(42)
    state: dict[str, dict] = {}
    t = 1_700_000_000.0
    for i in range(count):
        seed = seed_list[i % len(seed_list)]
        key, obj = _interaction_object(seed.value)
        base_id = str(obj["id"])
        ident = f"{base_id[:-6]}{(i // len(seed_list)) % interactions:06d}"
        user_data = state.setdefault(ident, dict(obj["userData"]))
        update = {
            "UserData1": rng.randint(100_000_000, 999_999_999),
            "UserData2": f"DATAUPDATE-@{rng.randint(0, 999)}",
        }
        if i % 3 == 0:
            update["Subject"] = rng.choice(["Customer support", "Billing", "Order status"])
        user_data.update(update)
        collection = "smssessions" if seed.media == "sms" else "facebooksessions"
        path = f"/api/v2/me/{collection}/{ident}"
        request_body = json.dumps({"operationName": "UpdateUserData", "userData": update}).encode()
        t += rng.uniform(0.001, 0.02)
        data = dict(seed.value)
        data["referenceId"] = i + 1
        data[key] = {**obj, "id": ident, "userData": dict(user_data)}
        message = json.dumps({"channel": seed.channel, "data": data}).encode()
        request_headers = [
            ("Host", "127.0.0.1:8090"),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip, deflate"),
            ("Authorization", AUTH),
            ("X-CSRF-TOKEN", CSRF),
            ("Cookie", f"JSESSIONID={SESSION}; BAYEUX_BROWSER=3f9a1c2b4d6e8f0a"),
            ("Content-Length", str(len(request_body))),
            ("Content-Type", "application/json"),
        ]
        answer_body = b'{"statusCode": 0}'
        answer_headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(answer_body))),
            ("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ("Server", USER_AGENT),
        ]
        connect = [
            {
                "channel": "/meta/connect",
                "clientId": CLIENT_ID,
                "connectionType": "long-polling",
                "id": str(i + 3),
            }
        ]
        yield Exchange(
            t=t,
            path=path,
            request_headers=request_headers,
            request_body=request_body,
            status=200,
            answer_headers=answer_headers,
            answer_body=answer_body,
            batch=b"[" + message + b"]",
            notification=message,
            connect_body=json.dumps(connect).encode(),
            request_fields=_fields(request_headers),
            answer_fields=_fields(answer_headers),
        )


class AddonPath:
    """What the recorder does for one pair, minus mitmproxy: the events the addon hands over
    (request, its answer, the long-poll answer carrying the notification), through the real
    recording core (gwsproxy.record.core.Recording: classify_request, Correlator, parse_batch,
    redaction, records.pair_record, CaptureWriter.write), in this process."""

    def __init__(self, writer: Any) -> None:
        self.recording = Recording()
        self.recording.writer = writer
        self.identity = (AGENT, SESSION, "127.0.0.1")

    @property
    def pairs(self) -> int:
        return self.recording.correlator.counts.pairs

    def tick(self, now: float) -> None:
        """The addon's 0.25 s ticker: overdue pairs close as timed out."""
        self.recording.handle(Advance(ADVANCE, now))

    def feed(self, ex: Exchange, key: int) -> None:
        handle, identity = self.recording.handle, self.identity
        handle(
            Request(
                REQUEST, key, identity, "POST", ex.path, ex.request_fields, ex.request_body, ex.t
            )
        )
        handle(
            Response(
                RESPONSE,
                key,
                identity,
                "POST",
                ex.path,
                ex.status,
                ex.answer_fields,
                ex.answer_body,
                ex.t + 0.002,
            )
        )
        handle(
            Response(
                RESPONSE,
                -key,
                identity,
                "POST",
                CONNECT_PATH,
                200,
                BATCH_FIELDS,
                ex.batch,
                ex.t + 0.02,
            )
        )

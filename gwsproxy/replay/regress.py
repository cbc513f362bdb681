"""Regression replay: re-send a capture's requests to a GWS and compare what they change.

Agents replay in parallel, each in recorded order; notifications are paired by the same
Correlator as the recording addon, and each new pair is compared with its recorded one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape

from gwsproxy import gws
from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.correlate import Closed, Correlator, Pair
from gwsproxy.errors import GwsProxyError
from gwsproxy.gws.session import Access, GwsError, GwsSession
from gwsproxy.record.records import after_of, pair_record
from gwsproxy.redact import Redactor
from gwsproxy.replay.compare import Comparison, Outcome, compare


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    capture: str
    target: str
    user: str | None = None  # replay every agent as this user
    password: str = "password"
    maps: tuple[tuple[str, str], ...] = ()  # OLD=NEW substitutions in paths and bodies
    ignore: tuple[str, ...] = ()  # regexes of user-data keys not to compare
    output: str | None = None  # a capture of the replay's own pairs
    rate: float = 0.0  # requests per second over all agents; 0: as fast as answers come
    transport: str = "long-polling"
    timeout: float = 10.0
    access: Access = field(default_factory=Access)  # bearer tokens, extra headers, TLS


@dataclass(slots=True)
class Recorded:
    outcome: Outcome
    scope: str
    method: str
    path: str
    body: bytes
    content_type: str | None
    t: float = 0.0  # when it was sent (epoch seconds): the pacing `swarm` replays


@dataclass(slots=True)
class ReplayResult:
    """Pass or fail per pair: a replay's comparisons, or a check's verdicts (`gwsproxy check`)."""

    comparisons: list[Comparison] = field(default_factory=list)
    output: str | None = None
    elapsed: float = 0.0
    sources: list[str] = field(default_factory=list)  # each comparison's capture, when several
    suite: str = "gwsproxy replay"  # the report's name

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.comparisons)

    @property
    def failed(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    @property
    def ok(self) -> bool:
        return not self.failed


def outcome_of(summary: dict[str, Any], body: dict[str, Any]) -> Outcome:
    return Outcome(
        id=int(summary.get("id") or 0),
        status=str(summary.get("status")),
        operation=str(summary.get("operation")),
        media=str(summary.get("media")),
        interaction_id=str(summary.get("interaction_id")),
        requested=body.get("requested"),
        before=body.get("before"),
        after=after_of(summary, body),
    )


def _outcome_of_pair(pair: Pair) -> Outcome:
    req = pair.request
    return Outcome(
        id=pair.id,
        status=str(pair.status),
        operation=req.operation,
        media=req.media,
        interaction_id=req.interaction_id,
        requested=req.requested,
        before=pair.before,
        after=pair.after,
    )


def parse_maps(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`--map OLD=NEW` options as (old, new) pairs; GwsProxyError for one without `=` or OLD."""
    maps = []
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise GwsProxyError(f"--map {item!r}: expected OLD=NEW")
        maps.append((old, new))
    return tuple(maps)


def mapped(maps: tuple[tuple[str, str], ...], data: Any) -> Any:
    """`data` (bytes or text: a path, a body) with each OLD replaced by its NEW, in order."""
    for old, new in maps:
        if isinstance(data, bytes):
            data = data.replace(old.encode(), new.encode())
        else:
            data = data.replace(old, new)
    return data


def load_pairs(path: str) -> list[Recorded]:
    """The capture's pairs in recorded order; CaptureError if it cannot be read."""
    pairs: list[Recorded] = []
    with CaptureReader(path) as reader:
        for entry in reader.iter_entries():
            if entry.kind != Kind.PAIR:
                continue
            body = reader.body(entry) or {}
            request = body.get("request") or {}
            headers = {str(k).lower(): str(v) for k, v in request.get("headers") or ()}
            pairs.append(
                Recorded(
                    outcome=outcome_of(entry.summary, body),
                    scope=str(entry.summary.get("scope")),
                    method=str(request.get("method", "POST")),
                    path=str(request.get("path", "")),
                    body=bytes(request.get("body") or b""),
                    content_type=headers.get("content-type"),
                    t=float(entry.summary.get("t") or 0.0),
                )
            )
    pairs.sort(key=lambda r: r.outcome.id)
    return pairs


class Replayer:
    """One replay run against one target."""

    def __init__(self, config: ReplayConfig, progress: Callable[[Comparison], None] | None = None):
        self.config = config
        self.correlator = Correlator(config.timeout)
        self.redactor = Redactor()
        self.progress = progress
        self.writer: CaptureWriter | None = None
        self._waiting: dict[Any, asyncio.Future[Pair]] = {}
        self._next_slot = 0.0

    def _user_of(self, scope: str) -> str:
        if self.config.user:
            return self.config.user
        if scope.startswith("user:"):
            return scope.removeprefix("user:")
        raise GwsError(f"the capture's scope {scope} names no user: give --user")

    def _mapped(self, data: bytes | str) -> Any:
        return mapped(self.config.maps, data)

    async def run(self) -> ReplayResult:
        pairs = load_pairs(self.config.capture)
        by_scope: dict[str, list[Recorded]] = {}
        for r in pairs:
            by_scope.setdefault(r.scope, []).append(r)
        started = time.monotonic()
        sessions: dict[str, GwsSession] = {}
        ticker = asyncio.create_task(self._tick())
        try:
            for scope in by_scope:  # (a user without a bearer token: GwsError, the others closed)
                sessions[scope] = GwsSession(
                    self.config.target,
                    self._user_of(scope),
                    self.config.password,
                    transport=self.config.transport,
                    timeout=self.config.timeout,
                    access=self.config.access,
                )
            await asyncio.gather(*(s.open() for s in sessions.values()))
            if self.config.output:
                header = {"upstream": self.config.target, "replay_of": self.config.capture}
                path = time.strftime(self.config.output)
                try:  # the default output is in ./captures/, made here as `demo` does
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                    self.writer = CaptureWriter(path, header)
                except OSError as e:
                    raise GwsProxyError(f"cannot write capture {path}: {e.strerror or e}") from None
            results = await asyncio.gather(
                *(self._agent(scope, sessions[scope], recs) for scope, recs in by_scope.items())
            )
        finally:
            ticker.cancel()
            for s in sessions.values():
                await s.close()
            if self.writer is not None:
                self.writer.close()
        comparisons = sorted((c for r in results for c in r), key=lambda c: c.recorded.id)
        output = str(self.writer.path) if self.writer else None
        return ReplayResult(comparisons, output, time.monotonic() - started)

    async def _agent(
        self, scope: str, session: GwsSession, recorded: list[Recorded]
    ) -> list[Comparison]:
        assert session.cometd is not None
        listener = asyncio.create_task(self._listen(scope, session))
        seen: set[str] = set()
        out: list[Comparison] = []
        try:
            for rec in recorded:
                pair = await self._one(scope, session, rec, seen)
                actual = None if pair is None else _outcome_of_pair(pair)
                comparison = compare(rec.outcome, actual, self.config.ignore)
                out.append(comparison)
                if self.progress:
                    self.progress(comparison)
        finally:
            listener.cancel()
        return out

    async def _one(
        self, scope: str, session: GwsSession, rec: Recorded, seen: set[str]
    ) -> Pair | None:
        path = self._mapped(rec.path)
        body = self._mapped(rec.body)
        request = gws.classify_request(rec.method, path, body)
        if not isinstance(request, gws.UserDataRequest):
            return None
        url = session.base + path
        if request.interaction_id not in seen:
            seen.add(request.interaction_id)
            with session.errors():
                status, _, doc, _ = await session.get(url)
            for obj in gws.interactions_in(doc) if status == 200 else ():
                self.correlator.observe(str(obj["id"]), obj["userData"])
        await self._pace()
        key = object()
        done: asyncio.Future[Pair] = asyncio.get_running_loop().create_future()
        self._waiting[key] = done
        raw_request = {
            "method": rec.method,
            "path": path,
            "headers": [["Content-Type", rec.content_type or "application/json"]],
            "body": body,
            "repairs": [],
        }
        self._settle(self.correlator.request(key, scope, request, time.time(), raw_request))
        with session.errors():  # (a user-data request is a POST: classify_request says so)
            status, answer_body = await session.post(
                url, body, rec.content_type or "application/json"
            )
        raw = {"status": status, "headers": [], "body": answer_body}
        answer = gws.parse_answer(answer_body)
        self._settle(self.correlator.answer(key, answer, status, time.time(), raw))
        return await done

    async def _listen(self, scope: str, session: GwsSession) -> None:
        assert session.cometd is not None
        async for message in session.cometd.messages():
            note = gws.parse_notification(message)
            if note is not None:
                raw = {"transport": self.config.transport, "raw": json.dumps(message).encode()}
                self._settle(self.correlator.notification(scope, note, time.time(), raw))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self._settle(self.correlator.expire(time.time()))

    async def _pace(self) -> None:
        if self.config.rate <= 0:
            return
        now = time.monotonic()
        self._next_slot = max(self._next_slot, now) + 1 / self.config.rate
        await asyncio.sleep(max(0.0, self._next_slot - 1 / self.config.rate - now))

    def _settle(self, closed: list[Closed]) -> None:
        for item in closed:
            if not isinstance(item, Pair):
                continue
            if self.writer is not None:
                self.writer.write(Kind.PAIR, *pair_record(item, self.redactor))
            future = self._waiting.pop(item.key, None)
            if future is not None and not future.done():
                future.set_result(item)


def failure_lines(result: ReplayResult, limit: int = 20) -> list[str]:
    """The failing pairs as `replay` and `check` print them (rich markup), at most `limit`."""
    lines: list[str] = []
    for i, c in enumerate(result.comparisons):
        if c.passed:
            continue
        if len(lines) == limit:
            lines.append(f"... and {len(result.failed) - limit} more failures")
            break
        where = f"{escape(result.sources[i])}: " if _several(result.sources) else ""
        lines.append(f"[red]FAIL[/] {where}{escape(c.describe())}")
    return lines


def _several(sources: list[str]) -> bool:
    return len(set(sources)) > 1


def write_report(result: ReplayResult, path: str) -> None:
    """A JUnit XML (path ending .xml) or JSON report of the comparisons."""
    several = _several(result.sources)
    if path.endswith(".xml"):
        from xml.etree import ElementTree as ET

        suite = ET.Element(
            "testsuite",
            name=result.suite,
            tests=str(len(result.comparisons)),
            failures=str(len(result.failed)),
            time=f"{result.elapsed:.3f}",
        )
        for i, c in enumerate(result.comparisons):
            r = c.recorded
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{r.media}.{r.operation}",
                name=f"pair {r.id} {r.interaction_id}"
                + (f" ({result.sources[i]})" if several else ""),
            )
            if not c.passed:
                ET.SubElement(
                    case, "failure", message=c.problem or "user data differs"
                ).text = c.describe()
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
        return
    doc = {
        "passed": result.passed,
        "failed": len(result.failed),
        "elapsed": result.elapsed,
        "capture": result.output,
        "pairs": [
            {
                **({"file": result.sources[i]} if several else {}),
                "id": c.recorded.id,
                "media": c.recorded.media,
                "operation": c.recorded.operation,
                "interaction_id": c.recorded.interaction_id,
                "passed": c.passed,
                "problem": c.problem,
                "mismatches": [
                    {
                        "key": m.key,
                        "before": repr(m.before),
                        "expected": repr(m.expected),
                        "actual": repr(m.actual),
                    }
                    for m in c.mismatches
                ],
            }
            for i, c in enumerate(result.comparisons)
        ],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)


async def replay(
    config: ReplayConfig, progress: Callable[[Comparison], None] | None = None
) -> ReplayResult:
    return await Replayer(config, progress).run()

"""Stopping a recording proxy while clients are connected: what a user sees on Ctrl-C.

Agents hold CometD connections through the proxy (long polling and WebSocket), each with a
user-data operation whose notification is still to come, when the proxy gets SIGINT or SIGTERM.
It must stop within STOP_WITHIN seconds, say nothing that looks like a crash, and leave a capture
with an END record and those operations as `incomplete`. Another signal, once the first has had
a moment, stops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record import shutdown
from gwsproxy.sim.agents import Agent, LoadConfig

if TYPE_CHECKING:
    from conftest import Process, Procs

HOST = "127.0.0.1"
WAIT = 30.0  # seconds any single condition may take on a loaded machine
# The requirement, without slack: the process is gone within 2 s of the signal. Measured on the
# 2-core dev machine, signal to exit status: 0.06-0.17 s here; 0.4-0.9 s with 20 agents working
# flat out through the proxy.
STOP_WITHIN = 2.0
FORCED_WITHIN = 1.0  # a second signal: no waiting for anything
NOISE = ("Traceback", "CancelledError", "Exception in callback", "Task was destroyed")
AGENTS = {"long-polling": (1, 2), "websocket": (3, 4)}  # transport -> agent numbers


# ---- helpers ------------------------------------------------------------------------------------


def start_proxy(procs: Procs, kind: str, upstream: str, path: Path) -> tuple[Process, int]:
    """`mitmdump -s addons/gws_recorder.py` or `gwsproxy record`, recording into `path`;
    returns it and its port once it accepts connections."""
    if kind == "mitmdump":
        mitm = procs.mitmdump(upstream, path)
        return mitm, mitm.port
    record, port = procs.record(upstream, path)
    procs.wait_until(path.exists, WAIT, f"{path} to be created")
    return record, port


def assert_quiet(proxy: Process) -> None:
    said = proxy.stdout() + proxy.stderr()
    for word in NOISE:
        assert word not in said, f"{word!r} in the output of {proxy.describe()}"


class Connected:
    """Agents through the proxy, on both CometD transports, each with one operation answered
    and its notification still to come (the simulator delays notifications)."""

    def __init__(self, url: str) -> None:
        self.agents = [
            Agent(LoadConfig(target=url, transport=transport, timeout=WAIT * 2), n)
            for transport, numbers in AGENTS.items()
            for n in numbers
        ]
        self.work: asyncio.Future[list[object]] | None = None

    async def __aenter__(self) -> Connected:
        await asyncio.gather(*(a.start() for a in self.agents))
        self.work = asyncio.gather(*(a.run(1) for a in self.agents))
        await asyncio.wait_for(self._until_answered(), WAIT)
        return self

    async def _until_answered(self) -> None:
        while not all(a.report.answered == 1 for a in self.agents):
            if self.work is not None and self.work.done():
                self.work.result()  # raises what went wrong
                pytest.fail("the agents stopped before their operations were answered")
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        if self.work is not None:
            self.work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.work
        await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)


async def signal_and_time(proxy: Process, sig: int) -> float:
    """Send `sig`, wait for the exit; seconds from the signal to the exit status."""
    sent = time.monotonic()
    proxy.popen.send_signal(sig)
    await asyncio.to_thread(proxy.popen.wait, WAIT)
    return time.monotonic() - sent


def pair_statuses(path: Path) -> tuple[Counter[str], set[str], bool, list[object]]:
    with CaptureReader(path) as reader:
        pairs = [e.summary for e in reader.index() if e.kind == Kind.PAIR]
        return (
            Counter(p["status"] for p in pairs),
            {p["scope"] for p in pairs},
            reader.ended,
            list(reader.damage),
        )


# ---- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("kind", ["mitmdump", "record"])
def test_a_signal_with_clients_connected_stops_quietly_within_2s(
    procs: Procs, tmp_path: Path, kind: str, sig: int
) -> None:
    sim = procs.sim("--delay", "60")  # every notification still to come when the signal lands
    path = tmp_path / "stopped.gwscap"
    proxy, port = start_proxy(procs, kind, sim.url, path)

    async def scenario() -> float:
        async with Connected(f"http://{HOST}:{port}"):
            return await signal_and_time(proxy, sig)

    took = asyncio.run(scenario())
    assert proxy.popen.returncode == 0, proxy.describe()
    assert_quiet(proxy)
    assert took < STOP_WITHIN, f"{took:.2f} s from {sig.name} to the exit"
    statuses, scopes, ended, damage = pair_statuses(path)
    assert ended, "no END record"
    assert damage == []
    assert statuses == {"incomplete": 4}, statuses
    assert scopes == {f"user:agent{n}" for numbers in AGENTS.values() for n in numbers}


@pytest.mark.parametrize("kind", ["mitmdump", "record"])
def test_a_second_sigint_stops_at_once_and_the_capture_stays_readable(
    procs: Procs, tmp_path: Path, kind: str
) -> None:
    sim = procs.sim("--delay", "60")
    path = tmp_path / "forced.gwscap"
    proxy, port = start_proxy(procs, kind, sim.url, path)
    (worker,) = procs.children(proxy.pid)

    async def scenario() -> float:
        async with Connected(f"http://{HOST}:{port}"):
            # A recording worker that does not answer keeps the orderly stop from finishing,
            # as a stuck disk would: the first SIGINT starts it and it stays under way.
            os.kill(worker, signal.SIGSTOP)
            first = time.monotonic()
            proxy.popen.send_signal(signal.SIGINT)
            # The same Ctrl-C again, as a parent passing on the terminal's Ctrl-C sends it.
            proxy.popen.send_signal(signal.SIGINT)
            await asyncio.to_thread(
                procs.wait_until,
                lambda: (
                    not procs.accepts(port) and time.monotonic() - first > shutdown.DUPLICATE_WINDOW
                ),
                WAIT,
                "the proxy to stop listening after the first SIGINT",
            )
            assert proxy.alive(), f"a repeated SIGINT forced the exit: {proxy.describe()}"
            return await signal_and_time(proxy, signal.SIGINT)

    try:
        took = asyncio.run(scenario())
    finally:
        os.kill(worker, signal.SIGCONT)
    assert proxy.popen.returncode == 128 + signal.SIGINT, proxy.describe()
    assert took < FORCED_WITHIN, f"{took:.2f} s from the second SIGINT to the exit"
    assert_quiet(proxy)
    assert "SIGINT again: stopped at once" in proxy.stderr(), proxy.describe()
    # Its pipe closed, the worker writes what was open and exits; the file reads as a recording
    # that was cut short (no END record unless the worker already had its stop), undamaged.
    procs.wait_until(lambda: not procs.running(worker), WAIT, "the recording worker to finish")
    statuses, _, _, damage = pair_statuses(path)
    assert damage == []
    assert statuses == {"incomplete": 4}, statuses


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_simulator_stops_at_once_with_clients_connected(procs: Procs, sig: int) -> None:
    """Held long polls and open WebSockets are answered and closed, not waited out."""
    sim = procs.sim("--delay", "60")

    async def scenario() -> float:
        async with Connected(sim.url):
            return await signal_and_time(sim, sig)

    took = asyncio.run(scenario())
    assert sim.popen.returncode == 0, sim.describe()
    assert_quiet(sim)
    assert took < 1.0, f"{took:.2f} s from {sig.name} to the exit"

"""mitmdump's RSS over 100,000 CometD notifications on one WebSocket: with the addon it stays flat.

Target: with the addon and gws_trim_websocket=true (A), RSS at 100k / RSS at 10k <= 1.15, while
plain mitmdump (B), which keeps every message of a flow, grows. (C), the addon with the trim
off, is shown too.

An in-script Bayeux server (gwsproxy.bayeux.server.BayeuxServer on aiohttp, no auth,
127.0.0.1) publishes
GWS-shaped notifications (chat PropertiesUpdated, ~1.5 KB of userData, referenceId n) in bursts
of 100, only as fast as the slowest client drains them; within a burst it yields to the event
loop after every `--batch` notifications (default 10), so the server sends about that many per
frame (CometD batches what is pending; 1 per frame is ~4x slower through three mitmdumps).
Three mitmdump processes in reverse mode (A, B, C) stand in front of it, and one raw Bayeux
WebSocket client (handshake, subscribe /v2/me/**, connect) goes through each: they run side by
side on the same notification stream.
Each client samples its mitmdump's VmRSS (/proc/PID/status) every 5,000 notifications.

    python bench/bench_memory.py            # full: 100,000 notifications
    python bench/bench_memory.py --smoke    # 3,000 notifications; CI checks that it runs

Exits 0 whatever the result (PASS/MISS is printed); non-zero only if the bench itself breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from _common import ROOT, header, print_results, verdict
from aiohttp import web

from gwsproxy import bayeux
from gwsproxy.bayeux.server import BayeuxServer
from gwsproxy.processes import free_port, mitmdump_path, stop

ADDON = ROOT / "addons" / "gws_recorder.py"
TARGET_GROWTH = 1.15
CHANNEL = "/v2/me/chats"
BURST = 100
WINDOW = 1_000  # notifications published but not yet received by the slowest client
START_TIMEOUT = 20.0
STALL_TIMEOUT = 60.0  # no progress for this long: give up
INTERACTIONS = 10  # notifications rotate over these chats, so the addon's snapshots stay bounded


@dataclass
class Variant:
    key: str
    label: str
    extra: list[str]
    process: subprocess.Popen | None = None
    url: str = ""
    log: Path | None = None
    received: int = 0
    frames: int = 0
    samples: dict[int, int] = field(default_factory=dict)  # notifications -> RSS bytes
    error: str | None = None


# ---- processes -----------------------------------------------------------------------------------


def rss(pid: int) -> int:
    """Resident set size in bytes, from /proc/PID/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_mitmdump(variant: Variant, upstream: str, tmp: Path) -> None:
    port = free_port()
    variant.log = tmp / f"mitmdump-{variant.key}.out"
    command = [mitmdump_path(), "-q", "--listen-host", "127.0.0.1", "-p", str(port)]
    command += ["--mode", f"reverse:{upstream}", *variant.extra]
    with variant.log.open("w") as f:
        variant.process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    variant.url = f"http://127.0.0.1:{port}"


async def wait_ready(variant: Variant, session: aiohttp.ClientSession) -> None:
    assert variant.process is not None and variant.log is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and variant.process.poll() is None:
        try:
            async with session.get(variant.url + "/ready", timeout=aiohttp.ClientTimeout(2)):
                return  # any answer (404) through the proxy: it is up
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.1)
    raise SystemExit(f"mitmdump {variant.key} did not start: {variant.log.read_text()[-1500:]}")


# ---- the notification stream ---------------------------------------------------------------------


def user_data_template() -> dict:
    """~1.5 KB of chat user data in the shape GWS sends (strings, a few numbers)."""
    rng = random.Random(0)
    data: dict = {
        "RTenant": "Environment",
        "ChatServerHost": "gws-chat-01.example.int",
        "ChatServerPort": "7160",
        "CustomerSegment": "gold",
        "ServiceType": "support",
        "ServiceObjective": 30,
        "Subject": "Order status",
        "PegAGSocialMediaAgentGroup": 1,
    }
    for i in range(32):
        data[f"CustomField{i:02}"] = "".join(
            rng.choices(string.ascii_letters + string.digits, k=30)
        )
    return data


def notification(n: int, template: dict) -> dict:
    user_data = dict(template)
    user_data["Sequence"] = n
    return {
        "messageType": "ChatStateChangeMessage",
        "notificationType": "PropertiesUpdated",
        "referenceId": n,
        "chat": {
            "id": f"00025aA4V4DR{n % INTERACTIONS:04d}",
            "state": "Processing",
            "userData": user_data,
        },
    }


async def publish(server: BayeuxServer, variants: list[Variant], total: int, batch: int) -> None:
    """Publish `total` notifications in bursts, never more than WINDOW ahead of the slowest."""
    template = user_data_template()
    n = 0
    progress_at, last_min = time.monotonic(), -1
    while n < total:
        slowest = min(v.received for v in variants)
        if slowest != last_min:
            progress_at, last_min = time.monotonic(), slowest
        elif time.monotonic() - progress_at > STALL_TIMEOUT:
            raise RuntimeError(f"no progress for {STALL_TIMEOUT:g} s at {slowest} notifications")
        if any(v.error for v in variants):
            raise RuntimeError("; ".join(f"{v.key}: {v.error}" for v in variants if v.error))
        if n - slowest >= WINDOW:
            await asyncio.sleep(0.002)
            continue
        for i in range(min(BURST, total - n)):
            n += 1
            server.publish(CHANNEL, notification(n, template))
            if (i + 1) % batch == 0:
                await asyncio.sleep(0)  # the server's pusher sends what is queued as one frame
        await asyncio.sleep(0)


async def client(
    variant: Variant,
    session: aiohttp.ClientSession,
    total: int,
    every: int,
    subscribed: asyncio.Event,
) -> None:
    """A raw Bayeux WebSocket client through one mitmdump; samples that mitmdump's RSS."""
    assert variant.process is not None
    pid = variant.process.pid
    ids = iter(range(1, 1_000_000_000))
    url = variant.url + bayeux.NOTIFICATIONS_PATH
    try:
        async with session.ws_connect(url, autoping=True, heartbeat=None) as ws:
            handshake = {"channel": "/meta/handshake", "version": "1.0", "id": str(next(ids))}
            handshake["supportedConnectionTypes"] = ["websocket"]
            await ws.send_str(json.dumps([handshake]))
            reply = json.loads((await ws.receive(timeout=START_TIMEOUT)).data)[0]
            client_id = reply["clientId"]
            subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "id": "s"}
            subscribe["subscription"] = "/v2/me/**"
            connect = {"channel": "/meta/connect", "clientId": client_id}
            connect["connectionType"] = "websocket"
            first = {**connect, "id": str(next(ids)), "advice": {"timeout": 0}}
            await ws.send_str(json.dumps([subscribe, first]))
            variant.samples[0] = rss(pid)
            next_sample = every
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                variant.frames += 1
                for message in json.loads(frame.data):
                    channel = message.get("channel")
                    if channel == "/meta/subscribe":
                        subscribed.set()
                    elif channel == "/meta/connect":  # keep one connect held, as clients do
                        await ws.send_str(json.dumps([{**connect, "id": str(next(ids))}]))
                    elif "data" in message:
                        variant.received += 1
                if variant.received >= next_sample:
                    value = rss(pid)
                    while variant.received >= next_sample:  # a frame may cross several marks
                        variant.samples[next_sample] = value
                        next_sample += every
                if variant.received >= total:
                    break
    except Exception as e:  # reported by the publisher, which stops the run
        variant.error = f"{type(e).__name__}: {e}"
        subscribed.set()
        raise


async def run(variants: list[Variant], total: int, every: int, batch: int, tmp: Path) -> float:
    server = BayeuxServer(timeout=30.0)
    app = web.Application()
    server.add_routes(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
        for v in variants:
            start_mitmdump(v, upstream, tmp)
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(wait_ready(v, session) for v in variants))
            events = [asyncio.Event() for _ in variants]
            tasks = [
                asyncio.create_task(client(v, session, total, every, e))
                for v, e in zip(variants, events, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), START_TIMEOUT)
            await asyncio.sleep(0.2)  # let the first connects settle
            started = time.monotonic()
            await publish(server, variants, total, batch)
            await asyncio.wait_for(asyncio.gather(*tasks), STALL_TIMEOUT)
            return time.monotonic() - started
    finally:
        await runner.cleanup()


def count_notifications(path: Path) -> str:
    from gwsproxy.capture.format import Kind
    from gwsproxy.capture.reader import CaptureReader

    with CaptureReader(path) as reader:
        entries = reader.index()
        ended = reader.ended
    notes = sum(1 for e in entries if e.kind == Kind.NOTIFICATION)
    return f"{notes} unsolicited notifications recorded (clean end {ended})"


def k(n: int) -> str:
    return f"{n / 1000:g}k"


def mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="3,000 notifications")
    parser.add_argument("--total", type=int, default=None, help="notifications to send")
    parser.add_argument("--no-trim-off", action="store_true", help="skip variant C")
    parser.add_argument(
        "--batch", type=int, default=10, help="notifications per event-loop turn (~ per frame)"
    )
    args = parser.parse_args()
    total = max(1_000, min(args.total or (3_000 if args.smoke else 100_000), 1_000_000))
    every = max(total // 20, 100)  # 5,000 for 100k
    early = every * 2  # the "RSS at 10k" reference point (10% of the stream)
    batch = max(1, min(args.batch, BURST))

    with tempfile.TemporaryDirectory(prefix="bench_memory-") as tmpdir:
        tmp = Path(tmpdir)
        addon = ["-s", str(ADDON)]
        variants = [
            Variant(
                "A",
                "addon, trim on",
                [
                    *addon,
                    "--set",
                    f"gws_capture={tmp}/a.gwscap",
                    "--set",
                    "gws_trim_websocket=true",
                ],
            ),
            Variant("B", "plain mitmdump", []),
        ]
        if not args.no_trim_off:
            variants.append(
                Variant(
                    "C",
                    "addon, trim off",
                    [*addon, "--set", f"gws_capture={tmp}/c.gwscap"],
                )
            )
        header("bench_memory: mitmdump RSS over a long CometD WebSocket", args.smoke)
        print(
            f"{total:,} notifications on one CometD WebSocket per mitmdump, "
            f"RSS sampled every {every:,}, ~{batch} notifications per frame; "
            f"variants {', '.join(v.key for v in variants)}; "
            f"load average at start {os.getloadavg()[0]:.2f}"
        )
        try:
            elapsed = asyncio.run(run(variants, total, every, batch, tmp))
        finally:
            for v in variants:
                if v.process is not None:
                    stop(v.process)
        sanity = count_notifications(tmp / "a.gwscap")

    print(f"stream of {total:,} notifications took {elapsed:.1f} s ({total / elapsed:,.0f}/s)")
    print(f"capture A: {sanity}")
    print()
    for v in variants:
        series = ", ".join(f"{k(n)} {mb(r)}" for n, r in sorted(v.samples.items()) if n >= 0)
        print(f"{v.key} ({v.label}) RSS MB: {series}")
    print()

    def growth(v: Variant) -> float:
        return v.samples[total] / v.samples[early]

    def peak(v: Variant) -> int:
        return max(r for n, r in v.samples.items() if n >= early)

    by_key = {v.key: v for v in variants}
    a, b = by_key["A"], by_key["B"]
    result = verdict(growth(a), TARGET_GROWTH, smoke=args.smoke, higher_is_better=False)
    b_grows = growth(b) > TARGET_GROWTH
    print(
        f"{result}: A (addon, trim on) RSS@{k(total)} / RSS@{k(early)} = "
        f"{growth(a):.3f} (target <= {TARGET_GROWTH}); peak after {k(early)} / RSS@{k(early)} = "
        f"{peak(a) / a.samples[early]:.3f}"
    )
    print(
        f"control: B (plain mitmdump) grows {growth(b):.3f}x "
        f"({'as expected' if b_grows else 'not above the target: too short a stream?'})"
    )
    rows = []
    for v in variants:
        per_10k = (v.samples[total] - v.samples[early]) / (total - early) * 10_000 / 2**20
        target = {
            "A": f"<= {TARGET_GROWTH}: {result}",
            "B": f"grows (control): {'yes' if b_grows else 'no'}",
        }.get(v.key, "-")
        rows.append(
            [
                f"{v.key}: {v.label}",
                mb(v.samples.get(0)),
                mb(v.samples[early]),
                mb(v.samples[total]),
                mb(peak(v)),
                f"**{growth(v):.3f}**",
                f"{per_10k:+.2f}",
                f"{v.frames:,}",
                target,
            ]
        )
    print_results(
        f"mitmdump RSS over {total:,} CometD notifications on one WebSocket "
        f"(~{batch} per frame, ~1.5 KB userData each)",
        [
            "variant",
            "RSS@0 MB",
            f"RSS@{k(early)} MB",
            f"RSS@{k(total)} MB",
            f"peak after {k(early)} MB",
            f"growth @{k(total)} / @{k(early)}",
            "MB per 10k notifications",
            "frames",
            "target",
        ],
        rows,
        args.smoke,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

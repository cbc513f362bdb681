"""A fault-injecting TCP proxy for tests: forwards bytes and breaks connections on command.

It runs its own event loop in a thread, so synchronous tests steer it while real processes talk
through it: reset connections (RST), stall data, refuse new connections, change the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
UP, DOWN, BOTH = "up", "down", "both"  # up: client to upstream; down: upstream to client
CHUNK = 65536


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST rather than FIN: SO_LINGER on, timeout 0."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _directions(direction: str) -> tuple[str, ...]:
    if direction not in (UP, DOWN, BOTH):
        raise ValueError(f"direction must be {UP!r}, {DOWN!r} or {BOTH!r}, not {direction!r}")
    return (UP, DOWN) if direction == BOTH else (direction,)


@dataclass(eq=False)
class _Rule:
    """Reset the next `count` connections whose data in `direction` carries `pattern`."""

    pattern: bytes
    directions: tuple[str, ...]
    count: int


@dataclass(eq=False)
class _Stall:
    """Hold data in `directions`; with a pattern, only from the chunk carrying it onwards."""

    directions: tuple[str, ...]
    pattern: bytes | None
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class Connection:
    number: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    held: dict[str, _Stall] = field(default_factory=dict)  # direction -> stall holding it
    closed: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class FaultProxy:
    """`with FaultProxy(upstream_port) as proxy:` listens on `proxy.port` until the block ends.

    Every method is called from the test's thread and returns once the proxy has done it."""

    def __init__(self, upstream_port: int, upstream_host: str = HOST) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0
        self.resets = 0  # connections reset by a rule or reset_all
        self.events: list[str] = []  # what happened, for failure messages
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._rules: list[_Rule] = []
        self._stalls: list[_Stall] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- lifetime ------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # ---- faults --------------------------------------------------------------------------------

    def reset_all(self) -> int:
        """RST every current connection, both sides; returns how many."""
        return self._run(self._reset_all)

    def reset_next(self, pattern: bytes, direction: str = DOWN, count: int = 1) -> None:
        """The next `count` connections whose data in `direction` carries `pattern` are reset:
        the chunk carrying it is dropped, never forwarded."""
        rule = _Rule(pattern, _directions(direction), count)
        self._run(lambda: self._rules.append(rule))

    def pending_resets(self) -> int:
        """How many armed resets have not happened yet."""
        return self._run(lambda: sum(r.count for r in self._rules))

    def stall(
        self, direction: str = BOTH, *, pattern: bytes | None = None, seconds: float | None = None
    ) -> None:
        """Hold data in `direction` (only on connections from the chunk carrying `pattern` on,
        if given) for `seconds`, or until `release()`. Held data keeps its order."""
        stall = _Stall(_directions(direction), pattern)

        def add() -> None:
            self._stalls.append(stall)
            if seconds is not None:
                self._loop.call_later(seconds, self._release, stall)

        self._run(add)

    def stalled(self) -> int:
        """How many connection directions are held right now."""
        return self._run(lambda: sum(len(c.held) for c in self._connections))

    def release(self) -> None:
        """End every stall: held data flows on, in order."""
        self._run(lambda: [self._release(s) for s in list(self._stalls)])

    def clear(self) -> None:
        """Forget the armed resets and end every stall."""
        self._run(self._rules.clear)
        self.release()

    def refuse(self) -> None:
        """Stop listening: new connections are refused, as by a server that is down."""
        self._call(self._close_listener())

    def resume(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def set_upstream(self, port: int, host: str = HOST) -> None:
        """New connections go to host:port (those open keep their upstream)."""
        self._run(lambda: setattr(self, "upstream", (host, port)))

    def connections(self) -> int:
        return self._run(lambda: len(self._connections))

    # ---- running in the proxy's loop -----------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def _run(self, function: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return function()

        return self._call(call())

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, HOST, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.events.append("refusing")

    async def _shutdown(self) -> None:
        await self._close_listener()
        self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _reset_all(self) -> int:
        doomed = [c for c in self._connections if not c.closed]
        for c in doomed:
            self._reset(c, "reset_all")
        return len(doomed)

    def _reset(self, c: Connection, why: str) -> None:
        if c.closed:
            return
        c.closed = True
        c.gone.set()
        self.resets += 1
        self.events.append(f"#{c.number} reset: {why}")
        _rst(c.client)
        _rst(c.upstream)
        self._connections.discard(c)

    def _release(self, stall: _Stall) -> None:
        stall.released.set()
        if stall in self._stalls:
            self._stalls.remove(stall)

    # ---- one connection ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        c = Connection(self.accepted, writer)
        self._connections.add(c)
        try:
            try:
                up_reader, c.upstream = await asyncio.open_connection(*self.upstream)
            except OSError as e:
                self.events.append(f"#{c.number} upstream {self.upstream}: {e}")
                self._reset(c, "upstream refused")
                return
            await asyncio.gather(
                self._pump(c, reader, c.upstream, UP), self._pump(c, up_reader, writer, DOWN)
            )
        finally:
            self._tasks.discard(task)
            if not c.closed:
                c.closed = True
                self._connections.discard(c)
                for w in (c.client, c.upstream):
                    if w is not None:
                        w.close()

    async def _pump(
        self,
        c: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        try:
            while not c.closed:
                data = await reader.read(CHUNK)
                if not data:
                    if not c.closed:
                        with contextlib.suppress(OSError, RuntimeError):
                            writer.write_eof()
                    return
                if self._hit(c, data, direction):
                    return
                await self._wait_while_held(c, data, direction)
                if c.closed:
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            self._reset(c, f"{direction} broke")

    def _hit(self, c: Connection, data: bytes, direction: str) -> bool:
        for rule in self._rules:
            if rule.count > 0 and direction in rule.directions and rule.pattern in data:
                rule.count -= 1
                if rule.count == 0:
                    self._rules.remove(rule)
                self._reset(c, f"{direction} carried {rule.pattern!r}")
                return True
        return False

    async def _wait_while_held(self, c: Connection, data: bytes, direction: str) -> None:
        while not c.closed:
            stall = c.held.get(direction)
            if stall is None or stall.released.is_set():
                c.held.pop(direction, None)
                stall = next(
                    (
                        s
                        for s in self._stalls
                        if direction in s.directions and (s.pattern is None or s.pattern in data)
                    ),
                    None,
                )
                if stall is None:
                    return
                c.held[direction] = stall
                self.events.append(f"#{c.number} {direction} stalled")
            waits = [asyncio.ensure_future(e.wait()) for e in (stall.released, c.gone)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

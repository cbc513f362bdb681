"""The fault-injecting proxy of the e2e fault suite, with plain sockets: it forwards, resets,
stalls, refuses and moves upstream when told to, and nothing else."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from e2e.faultproxy import DOWN, UP, FaultProxy

TIMEOUT = 5.0


class Echo:
    """An upstream that echoes every chunk back, prefixed with its own name."""

    def __init__(self, name: bytes = b"") -> None:
        self.name = name
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received.append(data)
                conn.sendall(self.name + data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: Echo) -> Iterator[FaultProxy]:
    with FaultProxy(echo.port) as p:
        yield p


def connect(proxy: FaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def until(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def nothing_to_read(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        s.recv(1)
        return False
    except BlockingIOError:
        return True
    finally:
        s.setblocking(True)
        s.settimeout(TIMEOUT)


def test_forwards_both_ways(proxy: FaultProxy) -> None:
    with connect(proxy) as s:
        s.sendall(b"hello")
        assert s.recv(100) == b"hello"
        assert proxy.connections() == 1


def test_reset_all_sends_rst_to_the_client(proxy: FaultProxy) -> None:
    with connect(proxy) as s:
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            s.recv(10)
    assert proxy.resets == 1


def test_reset_next_drops_the_chunk_with_the_pattern_and_only_once(
    proxy: FaultProxy, echo: Echo
) -> None:
    proxy.reset_next(b"SECRET", direction=DOWN)
    assert proxy.pending_resets() == 1
    with connect(proxy) as s:
        s.sendall(b"plain")
        assert s.recv(100) == b"plain"
        s.sendall(b"a SECRET here")
        # The upstream saw it (it went up); its echo coming down never reaches the client.
        with pytest.raises(ConnectionResetError):
            s.recv(100)
    assert proxy.pending_resets() == 0
    with connect(proxy) as s:  # the rule is used up
        s.sendall(b"SECRET again")
        assert s.recv(100) == b"SECRET again"


def test_reset_next_upwards_never_reaches_the_upstream(proxy: FaultProxy, echo: Echo) -> None:
    proxy.reset_next(b"POST", direction=UP)
    with connect(proxy) as s:
        s.sendall(b"POST /x")
        with pytest.raises(ConnectionResetError):
            s.recv(100)
    assert all(b"POST" not in chunk for chunk in echo.received)


def test_stall_holds_data_until_released_in_order(proxy: FaultProxy) -> None:
    with connect(proxy) as s:
        proxy.stall(DOWN)
        s.sendall(b"one")
        until(lambda: proxy.stalled() == 1, "the stall")
        s.sendall(b"two")
        assert nothing_to_read(s)
        proxy.release()
        got = b""
        while len(got) < 6:
            got += s.recv(100)
        assert got == b"onetwo"


def test_stall_with_a_pattern_holds_only_that_connection(proxy: FaultProxy) -> None:
    proxy.stall(DOWN, pattern=b"notify")
    with connect(proxy) as held, connect(proxy) as free:
        held.sendall(b"notify me")
        until(lambda: proxy.stalled() == 1, "the stall")
        free.sendall(b"free")
        assert free.recv(100) == b"free"
        held.sendall(b"later")  # after the pattern, the held direction stays held
        assert nothing_to_read(held)
        proxy.release()
        got = b""
        while len(got) < len(b"notify melater"):
            got += held.recv(100)
        assert got == b"notify melater"


def test_stall_for_seconds_releases_itself(proxy: FaultProxy) -> None:
    with connect(proxy) as s:
        proxy.stall(UP, seconds=0.3)
        started = time.monotonic()
        s.sendall(b"slow")
        assert s.recv(100) == b"slow"
        assert time.monotonic() - started >= 0.25


def test_refuse_then_resume_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    proxy.resume()
    assert proxy.port == port
    with connect(proxy) as s:
        s.sendall(b"back")
        assert s.recv(100) == b"back"


def test_a_dead_upstream_resets_the_client_and_a_new_one_takes_over(proxy: FaultProxy) -> None:
    other = Echo(b"other:")
    try:
        dead = socket.create_server(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        proxy.set_upstream(dead_port)
        # The reset may come at any step: even setting an option on the fresh socket.
        with pytest.raises((ConnectionResetError, ConnectionAbortedError)), connect(proxy) as s:
            s.sendall(b"x")
            if not s.recv(10):
                raise ConnectionResetError("closed")
        proxy.set_upstream(other.port)
        with connect(proxy) as s:
            s.sendall(b"y")
            assert s.recv(100) == b"other:y"
    finally:
        other.close()

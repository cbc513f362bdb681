"""Events of an imported file, put back in time order without holding them in memory.

An import reads entries (HAR) or flows (mitmproxy dumps) in file order, but their events must
reach the recording in time order: a long poll or a WebSocket spans many others. Each event is
pickled to a temporary file as it is made; only a small index (sort key, order, offset,
length) stays in memory and is sorted, and the events are read back one at a time.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from typing import Any


class Spill:
    """`add(key, event)` in any order, then `replay()` in key order (ties: the order added).
    `key` is a tuple whose first item is the event's time. Also a recorder's sink (`handle`):
    an event handed over that way takes the key set in `key`."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._index: list[tuple[tuple[float, ...], int, int, int]] = []
        self.key: tuple[float, ...] = (0.0,)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return len(self._index)

    def add(self, key: tuple[float, ...], event: Any) -> None:
        data = pickle.dumps(tuple(event), pickle.HIGHEST_PROTOCOL)
        self._index.append((key, len(self._index), self._file.tell(), len(data)))
        self._file.write(data)

    def handle(self, event: Any) -> None:
        self.add(self.key, event)

    def last(self) -> float | None:
        """The latest time of the events added (None: none)."""
        return max((key[0] for key, *_ in self._index), default=None)

    def replay(self) -> Iterator[tuple[float, tuple[Any, ...]]]:
        """(time, event) in time order, the event as its plain tuple (what Recording takes)."""
        self._index.sort()
        for key, _, offset, length in self._index:
            self._file.seek(offset)
            yield key[0], pickle.loads(self._file.read(length))

"""Append-only capture writer: one frame per record, flushed (optionally fsynced) as written.
Creates files 0600 and never clobbers an existing capture; close() appends the END record."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from types import TracebackType

import zstandard

from .format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAGIC,
    ZSTD_LEVEL,
    CaptureError,
    CaptureFileError,
    Kind,
    encode_frame,
)


class CaptureWriter:
    def __init__(
        self,
        path: str | os.PathLike[str],
        header: dict,
        *,
        fsync: bool = False,
        append: bool = False,
    ) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}
        # ZstdCompressor is not thread-safe; it is only used under the lock.
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._fd: int | None = None
        summary = {**header, "format": FORMAT_NAME, "version": FORMAT_VERSION}
        summary.setdefault("created", time.time())
        # Encode before creating the file so a bad header leaves no empty file behind.
        frame = encode_frame(Kind.HEADER, summary, None, compressor=self._compressor)
        fd, fresh = _open(self._path, append)
        self._fd = fd
        try:
            # Magic and header go out in one write so a reader never sees a magic-only file
            # for longer than a single syscall. An appended session starts with its own header.
            prefix = MAGIC if fresh else b""
            self._write_all(prefix + frame)
            self._counts[int(Kind.HEADER)] = 1
            self._sync()
        except BaseException:
            self._fd = None
            os.close(fd)
            raise

    @property
    def path(self) -> Path:
        return self._path

    @property
    def counts(self) -> dict[int, int]:
        """Frames written per kind in this session, header included."""
        with self._lock:
            return dict(self._counts)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, kind: int, summary: dict, body: dict | None = None) -> int:
        """Append one record and return its frame offset. On return the record is visible to
        readers (and durable when fsync=True)."""
        with self._lock:
            if self._fd is None:
                raise CaptureError(f"{self._path}: capture already closed; open a new writer")
            frame = encode_frame(int(kind), summary, body, compressor=self._compressor)
            self._write_all(frame)
            # With O_APPEND the descriptor sits at the end of what was just written, which
            # stays right even if something else appended to the file meanwhile.
            offset = os.lseek(self._fd, 0, os.SEEK_CUR) - len(frame)
            self._counts[int(kind)] = self._counts.get(int(kind), 0) + 1
            self._sync()
            return offset

    def close(self, end: bool = True) -> None:
        """Append the END record (unless `end` is False: the recording was cut short and the
        file should say so) and close."""
        with self._lock:
            if self._fd is None:
                return
            fd = self._fd
            try:
                if end:
                    total = sum(self._counts.values())
                    summary = {
                        "counts": dict(self._counts),
                        "records": total,
                        "closed": time.time(),
                    }
                    self._write_all(
                        encode_frame(Kind.END, summary, None, compressor=self._compressor)
                    )
                    self._counts[int(Kind.END)] = self._counts.get(int(Kind.END), 0) + 1
                os.fsync(fd)
            finally:
                self._fd = None
                os.close(fd)

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # No END record here: a writer that was never closed did not end cleanly, and the
        # file should say so. Only the descriptor is released.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            self._fd = None
            os.close(fd)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _sync(self) -> None:
        # os.write is unbuffered, so every record is already visible to followers; fsync
        # only adds durability against power loss.
        if self._fsync and self._fd is not None:
            os.fsync(self._fd)


def _open(path: Path, append: bool) -> tuple[int, bool]:
    """Return (fd, fresh) where fresh means the magic must still be written."""
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise CaptureFileError(
            e.errno, f"cannot create capture {path}: {e.strerror}; check the directory"
        ) from e
    else:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask can only narrow the mode; make it exact
        return fd, True
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise CaptureFileError(e.errno, f"cannot open capture {path}: {e.strerror}") from e
    size = os.fstat(fd).st_size
    if size == 0:
        return fd, True
    if not append:
        os.close(fd)
        raise CaptureFileError(
            errno.EEXIST,
            f"{path} already exists and is not empty; choose another file name "
            "or pass append=True to continue it",
        )
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
    except OSError as e:
        os.close(fd)
        raise CaptureFileError(
            e.errno, f"cannot read {path} to check it before appending: {e.strerror}"
        ) from e
    if magic != MAGIC:
        os.close(fd)
        raise CaptureFileError(f"{path} is not a gwsproxy capture; refusing to append to it")
    return fd, False

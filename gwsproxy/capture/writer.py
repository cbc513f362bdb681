"""Append-only capture writer: one frame per record, flushed (optionally fsynced) as written.
Creates files 0600, never clobbers a capture (it continues one in a new session) and never
shares one with another writer; close() appends the END record."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAGIC,
    CaptureError,
    CaptureFileError,
    FrameEncoder,
    Kind,
)
from .reader import CaptureReader, Session

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

# Seconds a writer waits for another to let go of the file: a recorder that was just killed
# leaves a worker process that is still writing the last records of its session.
LOCK_WAIT = 10.0
_LOCK_POLL = 0.05


class CaptureWriter:
    def __init__(
        self,
        path: str | os.PathLike[str],
        header: dict[str, Any],
        *,
        fsync: bool = False,
        append: bool = False,
        lock_wait: float = LOCK_WAIT,
        version: int | None = None,
    ) -> None:
        """Start a capture at `path`; with `append`, an existing capture is continued in a new
        session. Holds an exclusive lock on the file until close(). `version` is the format
        to write (1 or 2); by default a new file is FORMAT_VERSION and a continued one keeps
        the version of its first header, so a file never mixes versions unless asked to."""
        self._path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self._fd: int | None = None
        # Encode before creating the file so a bad header leaves no empty file behind.
        header = {**header, "format": FORMAT_NAME, "version": version or FORMAT_VERSION}
        header.setdefault("created", time.time())
        FrameEncoder(header["version"]).encode(Kind.HEADER, header, None)
        fd = _open(self._path)
        self._fd = fd
        try:
            _fresh(fd, self._path, append)  # refuses at once, without waiting for the lock
            _lock(fd, self._path, lock_wait, exclusive=True)
            # Again under the lock: another writer may have started the file meanwhile.
            fresh = _fresh(fd, self._path, append)
            if version is None and not fresh:
                header["version"] = _file_version(self._path)
            # Not thread-safe (zstd contexts); only used under the lock.
            self._encoder = FrameEncoder(header["version"])
            frame = self._encoder.encode(Kind.HEADER, header, None)
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

    def write(self, kind: int, summary: dict[str, Any], body: dict[str, Any] | None = None) -> int:
        """Append one record and return its frame offset. On return the record is visible to
        readers (and durable when fsync=True)."""
        with self._lock:
            if self._fd is None:
                raise CaptureError(f"{self._path}: capture already closed; open a new writer")
            frame = self._encoder.encode(int(kind), summary, body)
            offset = self._append(frame, int(kind))
            # v2: once the first records have been seen, their dictionary follows them.
            d = self._encoder.dictionary_frame(time.time())
            if d is not None:
                self._encoder.use(self._append(d, int(Kind.DICT)))
            self._sync()
            return offset

    def _append(self, frame: bytes, kind: int) -> int:
        """Write one frame; its offset."""
        assert self._fd is not None
        self._write_all(frame)
        # With O_APPEND the descriptor sits at the end of what was just written, which
        # stays right even if something else appended to the file meanwhile.
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return os.lseek(self._fd, 0, os.SEEK_CUR) - len(frame)

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
                    self._write_all(self._encoder.encode(Kind.END, summary, None))
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


def _file_version(path: Path) -> int:
    """The format version of an existing capture's first header (FORMAT_VERSION if unknown)."""
    try:
        with CaptureReader(path) as reader:
            version = reader.header.get("version")
    except CaptureError:
        return FORMAT_VERSION
    return version if version in (1, 2) else FORMAT_VERSION


def previous_sessions(path: str | os.PathLike[str], wait: float = LOCK_WAIT) -> list[Session]:
    """The sessions already in `path`, for a writer about to continue it: [] when there is no
    file or it is empty. Waits (up to `wait` s) for a writer still at it, so that what is read
    is final. Reads summaries only. Raises CaptureFileError when the file cannot be read, is
    not a capture, or stays locked."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise CaptureFileError(e.errno, f"cannot read capture {path}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CaptureFileError(errno.EINVAL, f"{path} is not a regular file; give a file name")
        if st.st_size == 0:
            return []
        try:
            magic = os.read(fd, len(MAGIC))
        except OSError as e:
            raise CaptureFileError(e.errno, f"cannot read capture {path}: {e.strerror}") from e
        if magic != MAGIC:
            raise CaptureFileError(
                errno.EINVAL, f"{path} is not a gwsproxy capture; refusing to append to it"
            )
        _lock(fd, path, wait, exclusive=False)  # held while reading: no writer starts meanwhile
        try:
            with CaptureReader(path) as reader:
                for _entry in reader.iter_entries():
                    pass
                return reader.sessions
        except CaptureError as e:
            raise CaptureFileError(errno.EIO, str(e)) from None
    finally:
        os.close(fd)


def _lock(fd: int, path: Path, wait: float, *, exclusive: bool) -> None:
    """An advisory lock on the file: one writer at a time, and no reading of its sessions while
    one is writing. Two recorders on one file would interleave their sessions and pair ids."""
    if fcntl is None:
        return
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise CaptureFileError(
                    errno.EBUSY,
                    f"{path} is locked by another writer (a recorder still running?); "
                    "stop it or choose another file",
                ) from None
            time.sleep(_LOCK_POLL)
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return  # a filesystem without locks: carry on, as before there were any
            raise CaptureFileError(e.errno, f"cannot lock capture {path}: {e.strerror}") from e


def _open(path: Path) -> int:
    """Create the file (mode 0600) or open the existing one, for appending."""
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
        return fd
    try:
        return os.open(path, flags)
    except OSError as e:
        raise CaptureFileError(e.errno, f"cannot open capture {path}: {e.strerror}") from e


def _fresh(fd: int, path: Path, append: bool) -> bool:
    """True if the file is empty (the magic must still be written); raises CaptureFileError
    unless it is empty or (with `append`) a capture."""
    if os.fstat(fd).st_size == 0:
        return True
    if not append:
        raise CaptureFileError(
            errno.EEXIST,
            f"{path} already exists and is not empty; choose another file name "
            "or pass append=True to continue it",
        )
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
    except OSError as e:
        raise CaptureFileError(
            e.errno, f"cannot read {path} to check it before appending: {e.strerror}"
        ) from e
    if magic != MAGIC:
        raise CaptureFileError(f"{path} is not a gwsproxy capture; refusing to append to it")
    return False

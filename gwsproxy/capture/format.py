"""Capture file format (v2, reads v1): constants, frame encoding and bounded decoding.
Shared by the writer and the reader; see docs/capture-format.md for the byte layout."""

from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack
import zstandard

from gwsproxy.errors import GwsProxyError

MAGIC = b"GWSPXCAP"
SYNC = b"\xc7\x5a\x3b\xe1"
FORMAT_VERSION = 2  # what new captures are written as; v1 is still read (and written on request)
FORMAT_NAME = "gwsproxy-capture"

# Hard bounds so a hostile or damaged file can never make a reader allocate without limit.
MAX_FRAME = 64 * 1024 * 1024  # payload bytes of one frame
MAX_SUMMARY = 1024 * 1024  # encoded summary bytes; summaries are indexed for every record
MAX_BODY = 64 * 1024 * 1024  # decoded (decompressed) body bytes

# Bodies below this size rarely shrink under zstd and cost a frame header to try.
COMPRESS_MIN = 256
ZSTD_LEVEL = 3

FLAG_ZSTD = 0x01
# v2: the payload head is followed by a 5-byte offset of the DICT frame whose dictionary the
# compressed summary and body of this frame were made with.
FLAG_DICT = 0x02
FLAG_SUMMARY_ZSTD = 0x04  # v2: the summary is a zstd frame too
# Low nibble: body encoding (a reader must understand every bit set there to decode the body).
# High nibble: informational bits a reader may ignore.
BODY_ENCODING_MASK = 0x0F

FRAME_HEAD = struct.Struct("<4sII")  # sync, payload length, crc32 of payload
PAYLOAD_HEAD = struct.Struct("<BBI")  # kind, flags, summary length
FRAME_HEAD_SIZE = FRAME_HEAD.size  # 12
PAYLOAD_HEAD_SIZE = PAYLOAD_HEAD.size  # 6
DICT_REF_SIZE = 5  # u40 little-endian: file offset of a DICT frame

# v2 dictionaries: trained on the first DICT_SAMPLES records of a session (each summary and
# body, cut to SAMPLE_MAX bytes, so the samples never hold more than about 4 MiB), DICT_SIZE
# bytes. Records are written as they come meanwhile; only later ones use the dictionary.
DICT_SAMPLES = 128
DICT_SIZE = 16 * 1024
SAMPLE_MAX = 16 * 1024
MAX_DICT = 1024 * 1024  # readers refuse larger dictionaries (they are cached per reader)


class Kind(IntEnum):
    HEADER = 1
    PAIR = 2
    NOTIFICATION = 3
    RAW = 4
    NOTE = 5
    END = 6
    DICT = 7  # v2: a zstd dictionary for the records after it in its session


class CaptureError(GwsProxyError):
    """A capture file cannot be used at all; the message says what is wrong and what to do."""


class CaptureFileError(CaptureError, OSError):
    """A capture cannot be created or opened for writing. Also an OSError, so callers that
    already handle file errors (permissions, full disk) handle this the same way."""


class FormatError(ValueError):
    """One record's content cannot be decoded (the file as a whole may still be fine)."""


@dataclass(frozen=True, slots=True)
class Damage:
    offset: int
    length: int
    reason: str


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes | memoryview) -> Any:
    """Decode msgpack with every length bounded by the input size (no over-allocation).

    msgpack >= 1.0's unpackb already bounds every str/bin/array/map/ext length by the input
    length when no limit is passed (a 5-byte array header claiming 2**31 items is refused with
    "exceeds max_array_len(5)"), so no keyword limits are passed: parsing them cost ~1 us per
    call, a quarter of decoding a summary."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def pack_frame(kind: int, flags: int, summary: bytes, body: bytes = b"", ref: bytes = b"") -> bytes:
    """Frame already-encoded parts; the low-level primitive (tests use it to craft frames).
    `ref`: a v2 frame's dictionary reference (FLAG_DICT), between the payload head and the
    summary."""
    payload = PAYLOAD_HEAD.pack(kind, flags, len(summary)) + ref + summary + body
    return FRAME_HEAD.pack(SYNC, len(payload), zlib.crc32(payload)) + payload


def encode_body(
    body: dict[str, Any] | None, compressor: zstandard.ZstdCompressor | None = None
) -> tuple[int, bytes]:
    """Return (flags, body bytes) as v1 writes them; an absent body is stored as zero bytes."""
    raw = _pack_body(body)
    if raw is None:
        return 0, b""
    return _compress_alone(raw, compressor)


def _pack_body(body: dict[str, Any] | None) -> bytes | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        raise TypeError(f"body must be a dict or None, not {type(body).__name__}")
    raw = pack(body)
    if len(raw) > MAX_BODY:
        raise ValueError(f"body of {len(raw)} bytes exceeds MAX_BODY ({MAX_BODY})")
    return raw


def _pack_summary(kind: int, summary: dict[str, Any]) -> bytes:
    if not isinstance(summary, dict):
        raise TypeError(f"summary must be a dict, not {type(summary).__name__}")
    if not 0 <= kind <= 255:
        raise ValueError(f"kind {kind} does not fit in one byte")
    s = pack(summary)
    if len(s) > MAX_SUMMARY:
        raise ValueError(f"summary of {len(s)} bytes exceeds MAX_SUMMARY ({MAX_SUMMARY})")
    return s


def _compress_alone(raw: bytes, compressor: zstandard.ZstdCompressor | None) -> tuple[int, bytes]:
    if len(raw) < COMPRESS_MIN:
        return 0, raw
    packed = (compressor or zstandard.ZstdCompressor(level=ZSTD_LEVEL)).compress(raw)
    if len(packed) >= len(raw):
        return 0, raw
    return FLAG_ZSTD, packed


def _check_frame(s: bytes, b: bytes, extra: int = 0) -> None:
    if PAYLOAD_HEAD_SIZE + extra + len(s) + len(b) > MAX_FRAME:
        raise ValueError(f"record of {len(s) + len(b)} bytes exceeds MAX_FRAME ({MAX_FRAME})")


def encode_frame(
    kind: int,
    summary: dict[str, Any],
    body: dict[str, Any] | None,
    *,
    compressor: zstandard.ZstdCompressor | None = None,
) -> bytes:
    """One frame as v1 writes it: summary plain, body compressed alone."""
    s = _pack_summary(kind, summary)
    flags, b = encode_body(body, compressor)
    _check_frame(s, b)
    return pack_frame(kind, flags, s, b)


class FrameEncoder:
    """Encodes one session's records. Version 1: every body compressed alone (encode_frame).
    Version 2: the same until the first DICT_SAMPLES records have been seen; then
    dictionary_frame() trains a zstd dictionary on them and returns a DICT frame to write, and
    after use(offset) every summary and body is compressed with that dictionary. Not
    thread-safe (the writer calls it under its lock)."""

    def __init__(
        self, version: int = FORMAT_VERSION, *, samples: int | None = None, size: int | None = None
    ) -> None:
        if version not in (1, 2):
            raise ValueError(f"capture format version {version} cannot be written (1 or 2)")
        self.version = version
        self._plain = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._want = DICT_SAMPLES if samples is None else samples
        self._size = DICT_SIZE if size is None else size
        # Summaries and bodies (cut to SAMPLE_MAX) of the records so far, until trained.
        self._samples: list[bytes | bytearray | memoryview] | None = [] if version >= 2 else None
        self._records = 0
        self._dict: zstandard.ZstdCompressionDict | None = None
        self._compressor: zstandard.ZstdCompressor | None = None
        self._ref = b""  # the DICT frame's offset as stored in each frame (u40)

    def encode(self, kind: int, summary: dict[str, Any], body: dict[str, Any] | None) -> bytes:
        s = _pack_summary(kind, summary)
        raw = _pack_body(body)
        # A session's HEADER and END stay readable without its dictionary.
        c = None if kind in (Kind.HEADER, Kind.END) else self._compressor
        if c is None:
            flags, b = (0, b"") if raw is None else _compress_alone(raw, self._plain)
            _check_frame(s, b)
            if self._samples is not None and kind not in (Kind.HEADER, Kind.END):
                self._samples.append(s)
                if raw is not None:
                    self._samples.append(raw[:SAMPLE_MAX])
                self._records += 1
            return pack_frame(kind, flags, s, b)
        flags = FLAG_DICT
        packed = c.compress(s)
        if len(packed) < len(s):
            s, flags = packed, flags | FLAG_SUMMARY_ZSTD
        b = b""
        if raw is not None:
            packed = c.compress(raw)
            b, flags = (packed, flags | FLAG_ZSTD) if len(packed) < len(raw) else (raw, flags)
        _check_frame(s, b, DICT_REF_SIZE)
        return pack_frame(kind, flags, s, b, self._ref)

    def dictionary_frame(self, now: float) -> bytes | None:
        """When enough records have been seen: train the dictionary and return its DICT frame
        (the caller writes it, then calls use() with its offset). None otherwise; a session
        whose records cannot train a dictionary (zstd refuses them) goes on without one."""
        samples = self._samples
        if samples is None or self._records < self._want:
            return None
        self._samples = None
        try:
            d = zstandard.train_dictionary(self._size, samples, level=ZSTD_LEVEL)
        except zstandard.ZstdError:
            return None
        data = d.as_bytes()
        self._dict = d
        summary = {"t": now, "size": len(data), "records": self._records, "dict_id": d.dict_id()}
        return encode_frame(Kind.DICT, summary, {"zstd_dictionary": data})

    def use(self, offset: int) -> None:
        """Compress the records from now on with the dictionary just written at `offset`."""
        if self._dict is None or not 0 <= offset < 1 << (8 * DICT_REF_SIZE):
            return  # past 1 TiB a frame cannot refer to it: go on compressing alone
        self._dict.precompute_compress(level=ZSTD_LEVEL)
        self._compressor = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, dict_data=self._dict, write_dict_id=False
        )
        self._ref = offset.to_bytes(DICT_REF_SIZE, "little")


def decode_summary(
    data: bytes | memoryview, dctx: Dictionary | zstandard.ZstdDecompressor | None = None
) -> dict[str, Any]:
    """Decode a summary; with `dctx`, it is a zstd frame (flag FLAG_SUMMARY_ZSTD) to
    decompress with it (a Dictionary, or a plain decompressor)."""
    if dctx is not None:
        data = _decompress(data, dctx, MAX_SUMMARY, "summary")
    try:
        obj = unpack(data)
    except Exception as e:  # noqa: BLE001 - msgpack raises many ValueError/TypeError flavours
        raise FormatError(f"summary undecodable: {e}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"summary is a {type(obj).__name__}, not a map")
    return obj


_KNOWN_BODY_FLAGS = FLAG_ZSTD | FLAG_DICT | FLAG_SUMMARY_ZSTD


class Dictionary:
    """A DICT record's dictionary, ready to decompress with; safe to share between threads
    (a zstd decompression context is not, so its use is serialised)."""

    __slots__ = ("_dctx", "_lock")

    def __init__(self, data: bytes) -> None:
        self._dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(data))
        self._lock = threading.Lock()

    def decompress(self, data: bytes | memoryview, max_output_size: int) -> bytes:
        with self._lock:
            return self._dctx.decompress(data, max_output_size=max_output_size)


def decode_body(
    flags: int, data: bytes | memoryview, dctx: Dictionary | None = None
) -> dict[str, Any] | None:
    """Decompress and decode one body; every failure is a FormatError, never a big allocation.
    `dctx` holds the frame's dictionary (FLAG_DICT)."""
    if not len(data):
        return None
    unknown = flags & BODY_ENCODING_MASK & ~_KNOWN_BODY_FLAGS
    if unknown:
        raise FormatError(f"unsupported body encoding flags 0x{unknown:02x}")
    if flags & FLAG_ZSTD:
        data = _decompress(data, dctx or zstandard.ZstdDecompressor(), MAX_BODY, "body")
    try:
        obj = unpack(data)
    except Exception as e:  # noqa: BLE001 - as for the summary
        raise FormatError(f"body undecodable: {e}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"body is a {type(obj).__name__}, not a map")
    return obj


def load_dictionary(flags: int, body: bytes | memoryview) -> Dictionary:
    """The dictionary of a DICT frame (its flags and body); FormatError if it is not usable."""
    if flags & FLAG_DICT:
        raise FormatError("a dictionary record that refers to another dictionary")
    if len(body) > MAX_DICT + 64:
        raise FormatError(f"dictionary of {len(body)} bytes exceeds the {MAX_DICT} limit")
    obj = decode_body(flags, body)
    data = (obj or {}).get("zstd_dictionary")
    if not isinstance(data, bytes) or not data:
        raise FormatError("the dictionary record holds no dictionary")
    try:
        return Dictionary(data)
    except zstandard.ZstdError as e:  # pragma: no cover - zstd checks dictionaries lazily
        raise FormatError(f"dictionary unusable: {e}") from None


def _decompress(
    data: bytes | memoryview,
    dctx: Dictionary | zstandard.ZstdDecompressor,
    limit: int,
    what: str,
) -> bytes:
    try:
        size = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as e:
        raise FormatError(f"{what} compression damaged: {e}") from None
    # zstandard allocates the declared content size up front and ignores max_output_size
    # when a size is declared, so the declared size must be checked first.
    if size == zstandard.CONTENTSIZE_UNKNOWN:
        size = limit
    elif size > limit:
        raise FormatError(f"{what} declares {size} bytes decompressed, over the {limit} limit")
    try:
        return dctx.decompress(data, max_output_size=size)
    except zstandard.ZstdError as e:
        raise FormatError(f"{what} decompression failed: {e}") from None

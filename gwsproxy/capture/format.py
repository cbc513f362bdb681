"""Capture file format v1: constants, frame encoding and bounded decoding.
Shared by the writer and the reader; see docs/capture-format.md for the byte layout."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack
import zstandard

from gwsproxy.errors import GwsProxyError

MAGIC = b"GWSPXCAP"
SYNC = b"\xc7\x5a\x3b\xe1"
FORMAT_VERSION = 1
FORMAT_NAME = "gwsproxy-capture"

# Hard bounds so a hostile or damaged file can never make a reader allocate without limit.
MAX_FRAME = 64 * 1024 * 1024  # payload bytes of one frame
MAX_SUMMARY = 1024 * 1024  # encoded summary bytes; summaries are indexed for every record
MAX_BODY = 64 * 1024 * 1024  # decoded (decompressed) body bytes

# Bodies below this size rarely shrink under zstd and cost a frame header to try.
COMPRESS_MIN = 256
ZSTD_LEVEL = 3

FLAG_ZSTD = 0x01
# Low nibble: body encoding (a reader must understand every bit set there to decode the body).
# High nibble: informational bits a reader may ignore.
BODY_ENCODING_MASK = 0x0F

FRAME_HEAD = struct.Struct("<4sII")  # sync, payload length, crc32 of payload
PAYLOAD_HEAD = struct.Struct("<BBI")  # kind, flags, summary length
FRAME_HEAD_SIZE = FRAME_HEAD.size  # 12
PAYLOAD_HEAD_SIZE = PAYLOAD_HEAD.size  # 6


class Kind(IntEnum):
    HEADER = 1
    PAIR = 2
    NOTIFICATION = 3
    RAW = 4
    NOTE = 5
    END = 6


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


def pack_frame(kind: int, flags: int, summary: bytes, body: bytes = b"") -> bytes:
    """Frame already-encoded parts; the low-level primitive (tests use it to craft frames)."""
    payload = PAYLOAD_HEAD.pack(kind, flags, len(summary)) + summary + body
    return FRAME_HEAD.pack(SYNC, len(payload), zlib.crc32(payload)) + payload


def encode_body(
    body: dict[str, Any] | None, compressor: zstandard.ZstdCompressor | None = None
) -> tuple[int, bytes]:
    """Return (flags, body bytes); an absent body is stored as zero bytes."""
    if body is None:
        return 0, b""
    if not isinstance(body, dict):
        raise TypeError(f"body must be a dict or None, not {type(body).__name__}")
    raw = pack(body)
    if len(raw) > MAX_BODY:
        raise ValueError(f"body of {len(raw)} bytes exceeds MAX_BODY ({MAX_BODY})")
    if len(raw) < COMPRESS_MIN:
        return 0, raw
    packed = (compressor or zstandard.ZstdCompressor(level=ZSTD_LEVEL)).compress(raw)
    if len(packed) >= len(raw):
        return 0, raw
    return FLAG_ZSTD, packed


def encode_frame(
    kind: int,
    summary: dict[str, Any],
    body: dict[str, Any] | None,
    *,
    compressor: zstandard.ZstdCompressor | None = None,
) -> bytes:
    if not isinstance(summary, dict):
        raise TypeError(f"summary must be a dict, not {type(summary).__name__}")
    if not 0 <= kind <= 255:
        raise ValueError(f"kind {kind} does not fit in one byte")
    s = pack(summary)
    if len(s) > MAX_SUMMARY:
        raise ValueError(f"summary of {len(s)} bytes exceeds MAX_SUMMARY ({MAX_SUMMARY})")
    flags, b = encode_body(body, compressor)
    if PAYLOAD_HEAD_SIZE + len(s) + len(b) > MAX_FRAME:
        raise ValueError(f"record of {len(s) + len(b)} bytes exceeds MAX_FRAME ({MAX_FRAME})")
    return pack_frame(kind, flags, s, b)


def decode_summary(data: bytes | memoryview) -> dict[str, Any]:
    try:
        obj = unpack(data)
    except Exception as e:  # noqa: BLE001 - msgpack raises many ValueError/TypeError flavours
        raise FormatError(f"summary undecodable: {e}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"summary is a {type(obj).__name__}, not a map")
    return obj


def decode_body(flags: int, data: bytes | memoryview) -> dict[str, Any] | None:
    """Decompress and decode one body; every failure is a FormatError, never a big allocation."""
    if not len(data):
        return None
    unknown = flags & BODY_ENCODING_MASK & ~FLAG_ZSTD
    if unknown:
        raise FormatError(f"unsupported body encoding flags 0x{unknown:02x}")
    if flags & FLAG_ZSTD:
        data = _decompress(data)
    try:
        obj = unpack(data)
    except Exception as e:  # noqa: BLE001 - as for the summary
        raise FormatError(f"body undecodable: {e}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"body is a {type(obj).__name__}, not a map")
    return obj


def _decompress(data: bytes | memoryview) -> bytes:
    try:
        size = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as e:
        raise FormatError(f"body compression damaged: {e}") from None
    # zstandard allocates the declared content size up front and ignores max_output_size
    # when a size is declared, so the declared size must be checked first.
    if size == zstandard.CONTENTSIZE_UNKNOWN:
        size = MAX_BODY
    elif size > MAX_BODY:
        raise FormatError(f"body declares {size} bytes decompressed, over the {MAX_BODY} limit")
    try:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as e:
        raise FormatError(f"body decompression failed: {e}") from None

"""Capture files: append-only, crash-safe msgpack+zstd recordings of summary/body records.
Schema-agnostic framing layer; see docs/capture-format.md."""

from .format import (
    FORMAT_VERSION,
    MAGIC,
    MAX_BODY,
    MAX_FRAME,
    MAX_SUMMARY,
    SYNC,
    CaptureError,
    CaptureFileError,
    Damage,
    Kind,
    encode_frame,
)
from .reader import INTERRUPTED, CaptureReader, Entry, Follower
from .writer import CaptureWriter

__all__ = [
    "FORMAT_VERSION",
    "INTERRUPTED",
    "MAGIC",
    "MAX_BODY",
    "MAX_FRAME",
    "MAX_SUMMARY",
    "SYNC",
    "CaptureError",
    "CaptureFileError",
    "CaptureReader",
    "CaptureWriter",
    "Damage",
    "Entry",
    "Follower",
    "Kind",
    "encode_frame",
]

"""How the inspector writes values: bounded cell text, type names, times, and capped JSON views.

Everything here is bounded: a 1 MB string costs a slice, never a full render.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gwsproxy.lenient import Parsed, loads
from gwsproxy.verdict import MISSING

CELL_CHARS = 200  # a table cell never shows more than this
VIEW_BYTES = 64 * 1024  # a JSON view renders at most this much text
LINE_CHARS = 2000  # and no line of it longer than this

_TYPE_NAMES = {str: "str", int: "int", float: "float", bool: "bool", type(None): "null"}


def clip(text: str, limit: int = CELL_CHARS) -> str:
    """One line of at most `limit` characters, saying how long the original was."""
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} chars)"
    if "\n" in text or "\r" in text or "\t" in text:
        text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text


def type_name(value: Any) -> str:
    name = _TYPE_NAMES.get(type(value))
    if name:
        return name
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def value_text(value: Any, limit: int = CELL_CHARS) -> str:
    """A user-data value as JSON (so "1" and 1 look different), clipped; absent is "—"."""
    if value is MISSING:
        return "—"
    if isinstance(value, str) and len(value) > limit:
        return f'{json.dumps(value[:limit], ensure_ascii=False)[:-1]}…" ({len(value)} chars)'
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return clip(text, limit)


def value_cell(value: Any, width: int) -> str:
    """value_text fitted to a cell of `width` columns: what does not fit is cut, and the cut
    keeps saying how long the whole value is ("xxxx…" (1048576 chars))."""
    if value is MISSING:
        return "—"
    width = max(width, 12)
    if isinstance(value, str):
        if len(value) + 2 <= width:
            shown = json.dumps(value, ensure_ascii=False)
            if len(shown) <= width:
                return clip(shown, width)
        suffix = f'…" ({len(value)} chars)'
        room = max(1, width - len(suffix) - 1)
        head = json.dumps(value[:room], ensure_ascii=False)[:-1]
        return clip(head[: room + 1] + suffix, width + len(suffix))
    full = value_text(value, limit=max(width, CELL_CHARS))
    if len(full) <= width:
        return full
    try:
        total = len(json.dumps(value, ensure_ascii=False, default=repr))
    except (TypeError, ValueError, RecursionError):
        total = len(full)
    suffix = f"… ({total} chars)"
    return full[: max(1, width - len(suffix))] + suffix


def clock(t: Any, *, ms: bool = True) -> str:
    if not isinstance(t, int | float):
        return "-"
    try:
        d = datetime.fromtimestamp(t)
    except (OverflowError, OSError, ValueError):
        return "?"
    return d.strftime("%H:%M:%S") + (f".{d.microsecond // 1000:03d}" if ms else "")


def when(t: Any) -> str:
    if not isinstance(t, int | float):
        return "-"
    try:
        return datetime.fromtimestamp(t).isoformat(sep=" ", timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return "?"


def latency(summary: dict) -> str:
    t, t_note = summary.get("t"), summary.get("t_note")
    if not isinstance(t, int | float) or not isinstance(t_note, int | float):
        return ""
    ms = (t_note - t) * 1000
    return f"{ms:.0f}ms" if ms < 10_000 else f"{ms / 1000:.1f}s"


def agent(scope: Any) -> str:
    if not isinstance(scope, str):
        return "-"
    kind, _, name = scope.partition(":")
    if kind == "user":
        return name
    return f"{kind[0]}:{name}" if name else scope


_SHORT_OPS = {
    "UpdateUserData": "Update",
    "AttachUserData": "Attach",
    "DeleteUserData": "Delete",
    "DeleteUserDataPair": "DeletePair",
}


def short_op(op: Any) -> str:
    return _SHORT_OPS.get(op, str(op) if op is not None else "-")


def reference(summary: dict) -> str:
    ref = summary.get("reference_id")
    if ref is None:
        return ""
    return f"~{ref}" if summary.get("correlation") == "inferred" else str(ref)


def size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def json_view(raw: Any, limit: int = VIEW_BYTES) -> tuple[str, bool, list[str]]:
    """Text to show for raw body bytes: (text, is_json, notes). JSON is pretty-printed; what is
    not JSON is shown escaped; either is cut at `limit` characters with a note."""
    notes: list[str] = []
    if raw is None:
        return "", False, ["(none)"]
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raw = json.dumps(raw, ensure_ascii=False, default=repr).encode()
    data = bytes(raw)
    if not data:
        return "", False, ["(empty body)"]
    parsed = loads(data) if len(data) <= 64 * 1024 * 1024 else None
    if isinstance(parsed, Parsed):
        if parsed.repairs:
            notes.append("not strict JSON, shown repaired: " + "; ".join(parsed.repairs))
        try:
            text = json.dumps(parsed.value, indent=2, ensure_ascii=False, default=repr)
        except (ValueError, RecursionError):
            text = repr(parsed.value)
        is_json = True
    else:
        if parsed is not None:
            notes.append(f"{parsed.reason}; the raw bytes are shown escaped")
        text = _escaped(data[: limit + 1])
        is_json = False
    if len(text) > limit:
        notes.append(
            f"showing the first {size(limit)} of {size(len(text) if is_json else len(data))}; "
            "export the pair (e) for all of it"
        )
        text = text[:limit]
    if len(text) > LINE_CHARS and any(len(line) > LINE_CHARS for line in text.split("\n")):
        notes.append(f"lines longer than {LINE_CHARS} characters are cut")
        text = "\n".join(
            f"{line[:LINE_CHARS]}… ({len(line)} chars)" if len(line) > LINE_CHARS else line
            for line in text.split("\n")
        )
    return text, is_json, notes


def _escaped(data: bytes) -> str:
    text = data.decode("utf-8", "backslashreplace")
    return "".join(
        c if c in "\n\t" or (c.isprintable() and c != "\x7f") else repr(c)[1:-1] for c in text
    )

"""Lenient JSON: strict ``json.loads`` first, a single-pass repairer only when that fails.
It fixes the quirks of public Genesys API samples and reports every repair it applied."""

import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# Outside strings: runs that never need a repair and are copied verbatim.
_PLAIN = re.compile(r'[^"{}\[\],\-0-9A-Za-z_]+')
# Inside strings: runs that never need a repair (no quote, backslash or control char).
_STRING_RUN = re.compile(r'[^"\\\x00-\x1f]+')
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_PY_LITERALS = MappingProxyType({"None": "null", "True": "true", "False": "false"})
_VALID_ESCAPES = frozenset('"\\/bfnrt')
_UTF8_BOM = b"\xef\xbb\xbf"


# Not frozen: built for every message on the recording hot path, and a frozen dataclass pays an
# object.__setattr__ call per field in __init__. Treat instances as read-only.
@dataclass(slots=True)
class Parsed:
    """A decoded document; ``repairs`` is empty iff the input was strict JSON."""

    value: Any
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The input could not be decoded, even after repairs; ``reason`` is one line."""

    reason: str


def loads(
    data: bytes | bytearray | memoryview | str, *, max_depth: int = 1000
) -> Parsed | Unreadable:
    """Decode ``data`` as JSON, repairing known quirks if needed. Never raises.

    ``max_depth`` is only enforced on the repair path: strict JSON that the standard
    parser accepts is returned as is, whatever its depth.
    """
    # Fast path: nothing but the standard parser, so well-formed traffic costs no more.
    try:
        # A memoryview raises TypeError here, and the repair path below takes it.
        return Parsed(json.loads(data))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - JSONDecodeError, UnicodeDecodeError, RecursionError...
        pass
    try:
        return _slow(data, max_depth)
    except Exception as exc:  # noqa: BLE001 - callers rely on loads never raising
        return Unreadable(f"internal error while repairing: {type(exc).__name__}")


def _slow(data: object, max_depth: int) -> Parsed | Unreadable:
    repairs: dict[str, None] = {}  # insertion-ordered set: each repair reported once
    if isinstance(data, str):
        text = data
        if text.startswith("\ufeff"):  # json.loads rejects a BOM in str input
            text = text[1:]
            repairs["byte order mark stripped"] = None
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if raw.startswith(_UTF8_BOM):  # accepted by json.loads on bytes: not a repair
            raw = raw[len(_UTF8_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            repairs["invalid UTF-8 replaced"] = None
    else:
        return Unreadable(f"not JSON: expected bytes or str, got {type(data).__name__}")
    if not text.strip(" \t\n\r"):
        return Unreadable("empty input")

    fixed = _repair(text, max_depth, repairs)
    if isinstance(fixed, Unreadable):
        return fixed
    try:
        value = json.loads(fixed)
    except RecursionError:
        return Unreadable("nesting too deep for the JSON parser")
    except ValueError as exc:
        reason = f"not JSON: {' '.join(str(exc).split())}"
        if repairs:  # positions then refer to the repaired text, so say so
            reason += f" (after repairs: {', '.join(repairs)})"
        return Unreadable(reason)
    return Parsed(value, tuple(repairs))


def _skip_ws(text: str, i: int) -> int:
    """The index of the first non-whitespace character at or after ``i``."""
    return _WS.match(text, i).end()  # type: ignore[union-attr]  # `*` always matches


def _closes(text: str, j: int) -> bool:
    """Whether a quote ending just before ``j`` closes its string: a delimiter or EOF follows."""
    k = _skip_ws(text, j)
    return k >= len(text) or text[k] in ",:}]"


def _repair(text: str, max_depth: int, repairs: dict[str, None]) -> str | Unreadable:
    """Rewrite ``text`` into strict JSON in one left-to-right scan, recording repairs."""
    out: list[str] = []
    n = len(text)
    depth = 0
    i = 0
    while i < n:
        c = text[i]
        if c == '"':
            i = _repair_string(text, i, out, repairs)
            continue
        if c in "{[":
            # Counting here keeps the check free of recursion and off the fast path.
            depth += 1
            if depth > max_depth:
                return Unreadable(f"nesting deeper than {max_depth}")
            out.append(c)
            i += 1
        elif c in "}]":
            depth = max(depth - 1, 0)
            out.append(c)
            i += 1
        elif c == ",":
            k = _skip_ws(text, i + 1)
            if k < n and text[k] in "}]":
                repairs["trailing comma"] = None
            else:
                out.append(c)
            i += 1
        elif m := _NUMBER.match(text, i):
            out.append(m.group())
            i = m.end()
            # Python 2 reprs of large ints end in L, e.g. 1389261492035L.
            is_int = m.lastindex is None
            if is_int and text[i : i + 1] in ("L", "l") and not _WORD_CHAR.match(text, i + 1):
                repairs["python long literal"] = None
                i += 1
        elif m := _WORD.match(text, i):
            word = m.group()
            if word in _PY_LITERALS:
                repairs["python None/True/False"] = None
                word = _PY_LITERALS[word]
            out.append(word)  # anything else (NaN, garbage) is left for json to judge
            i = m.end()
        elif m := _PLAIN.match(text, i):
            out.append(m.group())
            i = m.end()
        else:  # a lone '-' not starting a number
            out.append(c)
            i += 1
    return "".join(out)


def _repair_string(text: str, start: int, out: list[str], repairs: dict[str, None]) -> int:
    """Copy the string literal opening at ``start`` into ``out``; return the index after it.

    A quote closes the string only if a delimiter (or EOF) follows it; any other quote
    is an unescaped inner quote. ``""DATA""`` is a doubled-quote string, but ``""``
    followed by a delimiter is the genuine empty string.
    """
    n = len(text)
    doubled = text.startswith('""', start) and not _closes(text, start + 2)
    i = start + 1
    if doubled:
        repairs["doubled quotes"] = None
        i += 1
    out.append('"')
    while i < n:
        if m := _STRING_RUN.match(text, i):
            out.append(m.group())
            i = m.end()
            if i >= n:
                break
        c = text[i]
        if c == '"':
            if doubled and text.startswith('"', i + 1) and _closes(text, i + 2):
                out.append('"')
                return i + 2
            if _closes(text, i + 1):
                out.append('"')
                return i + 1
            repairs["unescaped inner quote"] = None
            out.append('\\"')
            i += 1
        elif c == "\\":
            esc = text[i + 1 : i + 2]
            if esc in _VALID_ESCAPES or (esc == "u" and _HEX4.fullmatch(text, i + 2, i + 6)):
                out.append(text[i : i + 2])
                i += 2
            else:  # e.g. a Windows path: keep the backslash as a literal character
                repairs["invalid backslash escape"] = None
                out.append("\\\\")
                i += 1
        else:  # a raw control character, which JSON forbids inside strings
            if c in "\n\r":
                repairs["raw newline in string"] = None
            else:
                repairs["raw control character in string"] = None
            out.append(json.dumps(c)[1:-1])
            i += 1
    return n  # unterminated: left open so that json reports it

"""Tests for gwsproxy.lenient: strict fast path, each repair, unreadable input, never raising."""

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gwsproxy.lenient import Parsed, Unreadable, loads

# --- strict JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "b": [true, false, null], "c": "x"}',
        '{"a": 1, "b": [true, false, null], "c": "x"}',
        bytearray(b'{"a": 1, "b": [true, false, null], "c": "x"}'),
        memoryview(b'{"a": 1, "b": [true, false, null], "c": "x"}'),
        b'\xef\xbb\xbf{"a": 1, "b": [true, false, null], "c": "x"}',  # BOM is fine in bytes
    ],
)
def test_strict_json_has_no_repairs(data: Any) -> None:
    assert loads(data) == Parsed({"a": 1, "b": [True, False, None], "c": "x"})


def test_strict_empty_strings_are_untouched() -> None:
    assert loads(b'{"RVQID": "", "": [""]}') == Parsed({"RVQID": "", "": [""]})


def test_duplicate_keys_last_wins() -> None:
    assert loads('{"a": 1, "a": 2}') == Parsed({"a": 2})
    assert loads('{"a": 1, "a": None}') == Parsed({"a": None}, ("python None/True/False",))


# --- each quirk --------------------------------------------------------------------------

QUIRKS = [
    (
        '{"a": None, "b": True, "c": False}',
        {"a": None, "b": True, "c": False},
        "python None/True/False",
    ),
    (
        '{"big": 1389261492035L, "neg": -5l}',
        {"big": 1389261492035, "neg": -5},
        "python long literal",
    ),
    ("[1, 2,\n  ]", [1, 2], "trailing comma"),
    ('{"a": [1,],\r\n\t"b": {"c": 1, },\n}', {"a": [1], "b": {"c": 1}}, "trailing comma"),
    ('{"note": "line one\nline two"}', {"note": "line one\nline two"}, "raw newline in string"),
    ('{"note": "a\r\nb"}', {"note": "a\r\nb"}, "raw newline in string"),
    ('{"t": "a\tb\x00c\x1f"}', {"t": "a\tb\x00c\x1f"}, "raw control character in string"),
    ('{"key": ""DATA"", "n": 1}', {"key": "DATA", "n": 1}, "doubled quotes"),
    ('{""key"": ""DATA""}', {"key": "DATA"}, "doubled quotes"),
    ('{"text": "he said "hi" to me"}', {"text": 'he said "hi" to me'}, "unescaped inner quote"),
    ('["a "b" c", "d"]', ['a "b" c', "d"], "unescaped inner quote"),
    ('{"path": "C:\\data\\x"}', {"path": "C:\\data\\x"}, "invalid backslash escape"),
    ('\ufeff{"a": 1}', {"a": 1}, "byte order mark stripped"),
]


@pytest.mark.parametrize(("text", "expected", "repair"), QUIRKS)
def test_each_quirk_is_repaired_and_reported(text: str, expected: Any, repair: str) -> None:
    for data in (text, text.encode()):
        result = loads(data)
        if isinstance(data, bytes) and repair == "byte order mark stripped":
            assert result == Parsed(expected)  # a UTF-8 BOM is legal in JSON bytes
        else:
            assert result == Parsed(expected, (repair,))


def test_doubled_quotes_and_inner_quotes_coexist() -> None:
    result = loads('{"a": ""he said "hi" ok"", "b": "", "c": "x"}')
    assert result == Parsed(
        {"a": 'he said "hi" ok', "b": "", "c": "x"}, ("doubled quotes", "unescaped inner quote")
    )


def test_genuine_empty_string_survives_the_slow_path() -> None:
    result = loads('{"RVQID": "",\n "x": "" , "y": [""], "": 1,}')
    assert result == Parsed({"RVQID": "", "x": "", "y": [""], "": 1}, ("trailing comma",))


def test_strings_are_kept_verbatim_on_the_slow_path() -> None:
    text = '{"uri": "http: //host", "s": "None True 12L [1,]", "k": "a \\"q\\" b", "x": None}'
    result = loads(text)
    assert result == Parsed(
        {"uri": "http: //host", "s": "None True 12L [1,]", "k": 'a "q" b', "x": None},
        ("python None/True/False",),
    )


def test_each_repair_reported_once_in_order_of_appearance() -> None:
    result = loads("[None, 1L, None, 2L, [3,], [4,], True]")
    assert result == Parsed(
        [None, 1, None, 2, [3], [4], True],
        ("python None/True/False", "python long literal", "trailing comma"),
    )


def test_realistic_python_style_notification() -> None:
    text = (
        '{"referenceId": 85, "smsession": {"userData": {"RRequestedSkills": None, '
        '"UserData1": 987654321, "Big": 1389261492035L, "Note": "line one\nline two", '
        '"Subject": "Customer support",}, "uri": "http: //localhost:8080/x", '
        '"participants": [{"nickname": "a", "type": "Customer"},],}, '
        '"messageType": "test_accept "}'
    )
    result = loads(text.encode())
    assert isinstance(result, Parsed)
    user_data = result.value["smsession"]["userData"]
    assert user_data["UserData1"] == 987654321 and type(user_data["UserData1"]) is int
    assert user_data["Big"] == 1389261492035 and type(user_data["Big"]) is int
    assert user_data["RRequestedSkills"] is None
    assert user_data["Note"] == "line one\nline two"
    assert result.value["smsession"]["uri"] == "http: //localhost:8080/x"
    assert result.value["smsession"]["participants"] == [{"nickname": "a", "type": "Customer"}]
    assert result.value["messageType"] == "test_accept "
    assert set(result.repairs) == {
        "python None/True/False",
        "python long literal",
        "raw newline in string",
        "trailing comma",
    }


def test_invalid_utf8_is_replaced_and_reported() -> None:
    result = loads(b'{"name": "caf\xe9", "n": 1, "s": "\xed\xa0\x80"}')
    assert result == Parsed(
        {"name": "caf\ufffd", "n": 1, "s": "\ufffd" * 3}, ("invalid UTF-8 replaced",)
    )


def test_invalid_utf8_plus_other_repairs() -> None:
    result = loads(b'\xef\xbb\xbf{"name": "caf\xe9", "ok": True,}')
    assert result == Parsed(
        {"name": "caf\ufffd", "ok": True},
        ("invalid UTF-8 replaced", "python None/True/False", "trailing comma"),
    )


# --- unreadable input --------------------------------------------------------------------


def _assert_unreadable(result: Parsed | Unreadable, *fragments: str) -> None:
    assert isinstance(result, Unreadable)
    assert result.reason and "\n" not in result.reason
    for fragment in fragments:
        assert fragment in result.reason


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ("garbage", ("not JSON", "line 1 column 1")),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff", ("not JSON", "invalid UTF-8 replaced")),
        ('{"a": ', ("not JSON", "char 6")),
        ('{"a": "unterminated', ("not JSON",)),
        ('{"a", 1}', ("not JSON", "':'")),
        ('{"a": 1 "b": 2}', ("not JSON", "','", "char 8")),
        ("{Nonesuch: 1}", ("not JSON",)),
        ("[1, 2] [3]", ("not JSON", "Extra data")),
        ("", ("empty input",)),
        (b"", ("empty input",)),
        (" \n\t ", ("empty input",)),
        ("\x00", ("not JSON",)),
        ('["\\', ("not JSON",)),
    ],
)
def test_unreadable_inputs(data: str | bytes, fragments: tuple[str, ...]) -> None:
    _assert_unreadable(loads(data), *fragments)


def test_error_position_after_a_repair_says_so() -> None:
    _assert_unreadable(loads('{"a": None, "b" 1}'), "not JSON", "after repairs")


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000,
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 10_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"a": None,' * 10_000,
    ],
)
def test_deep_nesting_is_unreadable_and_quick(text: str) -> None:
    for data in (text, text.encode()):
        start = time.perf_counter()
        result = loads(data)
        assert time.perf_counter() - start < 1.0
        _assert_unreadable(result, "nesting")


def test_max_depth_applies_on_the_slow_path() -> None:
    _assert_unreadable(loads("[[[1,]]]", max_depth=2), "nesting deeper than 2")
    assert loads("[[[1,]]]", max_depth=3) == Parsed([[[1]]], ("trailing comma",))


def test_non_text_input_does_not_raise() -> None:
    _assert_unreadable(loads(None), "NoneType")  # type: ignore[arg-type]
    _assert_unreadable(loads(42), "int")  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
json_ish = st.lists(
    st.sampled_from(
        [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            '"',
            '""',
            "None",
            "1L",
            "-",
            "\\",
            "\n",
            " ",
            "a",
            "1",
            "\ufffd",
        ]
    ),
    max_size=40,
).map("".join)


@given(st.binary())
def test_never_raises_on_bytes(data: bytes) -> None:
    assert isinstance(loads(data), Parsed | Unreadable)


@given(st.text(st.characters(exclude_categories=())))  # includes lone surrogates
def test_never_raises_on_text(data: str) -> None:
    assert isinstance(loads(data), Parsed | Unreadable)


@given(json_ish)
def test_never_raises_on_json_like_text(data: str) -> None:
    assert isinstance(loads(data), Parsed | Unreadable)
    assert isinstance(loads(data.encode("utf-8", "surrogatepass")), Parsed | Unreadable)


@given(json_values)
def test_serialised_json_round_trips_strictly(value: Any) -> None:
    assert loads(json.dumps(value)) == Parsed(value)
    assert loads(json.dumps(value, ensure_ascii=False).encode()) == Parsed(value)


def _python_style(value: Any) -> str:
    """Dump like the public samples do: Python literals, L suffixes, trailing commas."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return f"{value}L"
    if isinstance(value, list):
        return "[" + "".join(f"{_python_style(v)},\n" for v in value) + "]"
    if isinstance(value, dict):
        members = "".join(f"{json.dumps(k)}: {_python_style(v)}, " for k, v in value.items())
        return "{" + members + "}"
    return json.dumps(value)


@given(json_values)
def test_python_style_dump_parses_back(value: Any) -> None:
    result = loads(_python_style(value))
    assert isinstance(result, Parsed)
    assert result.value == value
    assert set(result.repairs) <= {
        "python None/True/False",
        "python long literal",
        "trailing comma",
    }


@given(st.text(st.characters(exclude_categories=(), exclude_characters='"\\')))
def test_raw_string_contents_are_kept(content: str) -> None:
    result = loads('{"k": "' + content + '"}')
    assert isinstance(result, Parsed)
    assert result.value == {"k": content}

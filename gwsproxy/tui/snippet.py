"""What the inspector hands out for one pair: its export JSON and a pytest test that asserts it.

The test reads the capture through gwsproxy's public export and verdict API, so it keeps working
wherever the capture file goes with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gwsproxy.record.indexing import judged
from gwsproxy.report import pair_object

FULL_AFTER_CHARS = 600  # a small `after` is asserted whole, a large one key by key
VALUE_CHARS = 300  # a longer value is asserted by length


def export_pair(summary: dict[str, Any], body: dict[str, Any], directory: Path) -> Path:
    """Write `pair-<id>.json` (the export schema) into directory and return its path."""
    obj = pair_object(summary, body)
    path = directory / f"pair-{_slug(summary.get('id'))}.json"
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=repr) + "\n")
    return path


def pytest_snippet(capture: Path, summary: dict[str, Any], body: dict[str, Any]) -> str:
    obj = pair_object(summary, body)
    v = judged(summary, body)
    name = f"test_pair_{_slug(obj['id'])}_{_slug(obj['interaction_id'])}".lower()
    lines = [
        "from gwsproxy.report import export_pairs",
        "from gwsproxy.verdict import judge",
        "",
        f"CAPTURE = {str(capture.resolve())!r}",
        "",
        "",
        f"def {name}():",
        "    pair = next(",
        "        p",
        "        for p in export_pairs(CAPTURE)",
        f'        if p["id"] == {obj["id"]!r} and p["interaction_id"] == {obj["interaction_id"]!r}',
        "    )",
        f'    assert pair["operation"] == {obj["operation"]!r}',
        f'    assert pair["status"] == {obj["status"]!r}',
    ]
    after = obj["after"]
    if not isinstance(after, dict):
        lines.append(f'    assert pair["after"] is {after!r}')
    elif len(repr(after)) <= FULL_AFTER_CHARS:
        lines.append(f'    assert pair["after"] == {after!r}')
    else:
        lines.append('    after = pair["after"]')
        keys = [c.key for c in v.changed()] or list(after)[:10]
        for key in keys[:20]:
            if key not in after:
                lines.append(f"    assert {key!r} not in after")
                continue
            value = after[key]
            if len(repr(value)) > VALUE_CHARS and isinstance(value, str | list | dict):
                lines.append(f"    assert len(after[{key!r}]) == {len(value)}")
            else:
                lines.append(f"    assert after[{key!r}] == {value!r}")
    lines += [
        "    verdict = judge(",
        '        pair["status"],',
        '        pair["operation"],',
        '        pair["media"],',
        '        pair["requested"],',
        '        pair["before"],',
        '        pair["after"],',
        "    )",
        f"    assert verdict.name == {v.name.value!r}, verdict.changed()",
    ]
    return "\n".join(lines) + "\n"


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(value)).strip("_") or "x"

"""The record schema: what a pair, an unsolicited notification and a raw message look like on disk.

Summaries hold what list views filter on; bodies hold raw bytes and snapshots, decoded on demand.
"""

from __future__ import annotations

from typing import Any

from gwsproxy import gws
from gwsproxy.correlate import Pair, Status, Unsolicited
from gwsproxy.lenient import Parsed, loads
from gwsproxy.redact import Redactor

SCHEMA = 1


def pair_record(pair: Pair, redactor: Redactor) -> tuple[dict[str, Any], dict[str, Any]]:
    req = pair.request
    note = pair.note
    answer = pair.answer if isinstance(pair.answer, gws.Answer) else None
    summary = {
        "id": pair.id,
        "scope": pair.scope,
        "t": pair.t_request,
        "t_answer": pair.t_answer,
        "t_note": pair.t_note,
        "media": req.media,
        "collection": req.target.collection,
        "interaction_id": req.interaction_id,
        "operation": req.operation,
        "requested_keys": _requested_keys(req),
        "reference_id": note.reference_id
        if note and note.reference_id is not None
        else pair.answer_reference,
        "correlation": pair.correlation,
        "status": pair.status,
        "http_status": pair.http_status,
        "status_code": answer.status_code if answer else None,
        "note_type": _note_type(note) if note else None,
        "before_known": pair.before is not None,
        "error": pair.error,
    }
    body = {
        "request": pair.raw_request,
        "requested": _mask_requested(req, redactor),
        "response": pair.raw_answer,
        "notification": _note_body(note, pair.raw_note),
        "before": redactor.mask(pair.before),
    }
    return summary, body


def unsolicited_record(item: Unsolicited) -> tuple[dict[str, Any], dict[str, Any]]:
    note = item.note
    summary = {
        "scope": item.scope,
        "t": item.t,
        "media": note.media,
        "interaction_id": note.interaction_id,
        "reference_id": note.reference_id,
        "note_type": _note_type(note),
    }
    if item.reason:
        summary["reason"] = item.reason
    return summary, {"notification": _note_body(note, item.raw)}


def raw_record(
    t: float, reason: str, where: str, data: bytes, scope: str | None = None, **context: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Traffic that could not be read: kept byte for byte with why."""
    summary = {
        "t": t,
        "reason": reason,
        "where": where,
        "scope": scope,
        "size": len(data),
        **context,
    }
    return summary, {"bytes": data}


def notification_of(body: dict[str, Any]) -> gws.Notification | None:
    """The parsed notification of a pair or unsolicited record body."""
    raw = (body.get("notification") or {}).get("raw")
    if raw is None:
        return None
    parsed = loads(raw)
    return gws.parse_notification(parsed.value) if isinstance(parsed, Parsed) else None


def after_of(summary: dict[str, Any], body: dict[str, Any]) -> dict[str, Any] | None:
    """A pair's user data after the request (absent in a change notification means empty)."""
    if summary.get("status") != Status.MATCHED:
        return None
    note = notification_of(body)
    if note is None:
        return None
    return note.user_data if note.user_data is not None else {}


def _note_type(note: gws.Notification) -> str | None:
    return note.notification_type or (note.message_type or "").strip() or None


def _note_body(note: gws.Notification | None, raw: Any) -> dict[str, Any] | None:
    if note is None:
        return None
    return {
        "channel": note.channel,
        "message_type": note.message_type,
        "notification_type": note.notification_type,
        "reference_id": note.reference_id,
        **(raw or {}),
    }


def _requested_keys(req: gws.UserDataRequest) -> list[str] | None:
    requested = req.requested
    if isinstance(requested, dict):
        return list(requested)
    return requested


def _mask_requested(req: gws.UserDataRequest, redactor: Redactor) -> Any:
    requested = req.requested
    return redactor.mask(requested) if isinstance(requested, dict) else requested

"""Secrets out of captures: redacted headers, Bayeux clientIds, masked user-data values.

Stand-ins are keyed hashes, so equal secrets (or values) give equal stand-ins within a recording
and diffs still work, while a low-entropy password cannot be recovered from its hash offline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from typing import Any

DEFAULT_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-csrf-token",
)


class Redactor:
    def __init__(
        self,
        headers: Iterable[str] = DEFAULT_HEADERS,
        mask_keys: Iterable[str] = (),
        salt: bytes | None = None,
    ) -> None:
        self.headers = frozenset(h.lower() for h in headers)
        self.mask_keys = frozenset(mask_keys)
        self._salt = salt or secrets.token_bytes(16)
        # The same Authorization, Cookie and CSRF values come with every request of a session:
        # remember their stand-ins (an HMAC each) instead of recomputing them per request.
        self._stand_ins: dict[str | bytes, str] = {}

    def stand_in(self, secret: str | bytes) -> str:
        known = self._stand_ins.get(secret)
        if known is not None:
            return known
        data = secret.encode("utf-8", "replace") if isinstance(secret, str) else secret
        value = hmac.new(self._salt, data, hashlib.sha256).hexdigest()[:12]
        if len(self._stand_ins) >= 4096:  # bounded: hostile traffic cannot grow it forever
            self._stand_ins.clear()
        self._stand_ins[secret] = value
        return value

    def header_fields(
        self, fields: Iterable[tuple[str, str]], announced: Iterable[str] = ()
    ) -> list[list[str]]:
        """Header pairs with secret values replaced; `announced` adds names from X-CSRF-HEADER."""
        secret_names = self.headers | {a.lower() for a in announced}
        return [
            [name, f"<redacted {self.stand_in(value)}>" if name.lower() in secret_names else value]
            for name, value in fields
        ]

    def scrub(self, text: bytes, secrets_in_it: Iterable[str]) -> bytes:
        """Raw bytes with each known secret value (a clientId) replaced by its stand-in."""
        for value in secrets_in_it:
            if value:
                raw = value.encode("utf-8", "replace")
                text = text.replace(raw, f"redacted-{self.stand_in(value)}".encode())
        return text

    def mask(self, user_data: dict[str, Any] | None) -> dict[str, Any] | None:
        """User data with the chosen keys' values replaced by stable stand-ins."""
        if not self.mask_keys or user_data is None:
            return user_data
        return {
            k: f"masked:{self.stand_in(json.dumps(v, sort_keys=True))}"
            if k in self.mask_keys
            else v
            for k, v in user_data.items()
        }

    def mask_document(self, doc: Any) -> Any:
        """A parsed body or message with every `userData` inside it masked."""
        if not self.mask_keys:
            return doc
        if isinstance(doc, dict):
            return {
                k: self.mask(v)
                if k == "userData" and isinstance(v, dict)
                else self.mask_document(v)
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [self.mask_document(v) for v in doc]
        return doc

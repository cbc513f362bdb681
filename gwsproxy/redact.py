"""Secrets out of captures: redacted headers and URL parameters, Bayeux clientIds, masked
user-data values. One list for every way traffic comes in (live, mitmproxy dumps, HAR files).

Stand-ins are keyed hashes, so equal secrets (or values) give equal stand-ins within a recording
and diffs still work, while a low-entropy password cannot be recovered from its hash offline.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from typing import Any

# Redacted by name (the recorder's gws_redact_headers default). Cookie and Set-Cookie are
# redacted whole: JSESSIONID and every stickiness cookie (AWSELB, AWSALB, ...) with them.
DEFAULT_HEADERS = (
    "authorization",  # Basic, and OAuth 2 `Bearer` tokens
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-csrf-token",
    "x-xsrf-token",
    "x-api-key",
    "x-auth-token",
)
# A header or URL parameter whose name holds one of these is a secret too, whatever a deployment
# calls it (`access_token`, `X-My-Csrf`, `;jsessionid=`), even before GWS announced it.
SECRET_WORDS = (
    *("token", "csrf", "xsrf", "secret", "password", "passwd", "apikey", "api-key"),
    *("session", "auth", "credential", "signature"),
)
# Names that hold a secret word but carry none: GWS's X-CSRF-HEADER names the CSRF header.
NOT_SECRET = frozenset({"x-csrf-header"})
# `name=value` in a URL's query (after ?, split on &) or its path parameters (;jsessionid=...).
_URL_PARAM = re.compile(r"([;?&])([^=;?&#/]+)=([^;?&#/]*)")


@functools.lru_cache(maxsize=1024)
def secret_name(name: str) -> bool:
    """Whether a header or URL parameter of this name (any case) carries a secret by its name."""
    name = name.lower().replace("_", "-")
    return name not in NOT_SECRET and any(word in name for word in SECRET_WORDS)


# Headers whose value is a URL, whose query may carry a secret (a page's ?access_token=...).
URL_HEADERS = frozenset(("referer", "location", "content-location"))


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
        """Header pairs with secret values replaced; `announced` adds names from X-CSRF-HEADER.
        A header that holds a URL (Referer, Location) keeps it, but not its secret parameters."""
        secret_names = self.headers | {a.lower() for a in announced}
        return [[name, self._header_value(name, value, secret_names)] for name, value in fields]

    def _header_value(self, name: str, value: str, secret_names: frozenset[str]) -> str:
        if self._secret(name, secret_names):
            return f"<redacted {self.stand_in(value)}>"
        return self.url(value) if name.lower() in URL_HEADERS else value

    @staticmethod
    def _secret(name: str, secret_names: frozenset[str]) -> bool:
        return name.lower() in secret_names or secret_name(name)

    def url(self, url: str) -> str:
        """A path (or URL) with the values of its secret parameters (`?access_token=...`,
        `;jsessionid=...`) replaced by stand-ins."""
        if "=" not in url:
            return url
        return _URL_PARAM.sub(self._param, url)

    def _param(self, found: re.Match[str]) -> str:
        sep, name, value = found.groups()
        if not value or not self._secret(name, self.headers):
            return found[0]
        return f"{sep}{name}=redacted-{self.stand_in(value)}"

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

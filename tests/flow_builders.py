"""A GWS exchange over HTTPS as mitmproxy holds it (an HTTPFlow), for the tests that import
dumps and HAR files made of such flows."""

from __future__ import annotations

from collections.abc import Sequence

from mitmproxy import http
from mitmproxy.test import tflow

Headers = Sequence[tuple[bytes, bytes]]


def gws_flow(
    method: str,
    path: str,
    body: bytes,
    answer: bytes,
    *,
    sent: float,
    answered: float,
    headers: Headers = (),
    answer_headers: Headers = (),
) -> http.HTTPFlow:
    """`method path` to https://gws.example.test with `headers`, its request sent at `sent`
    (taking 1 ms), answered 200 with `answer` and `answer_headers`, the answer ending at
    `answered` (taking 1 ms)."""
    flow = tflow.tflow(resp=True)
    req = flow.request
    req.method, req.scheme, req.host, req.port, req.path = (
        method,
        "https",
        "gws.example.test",
        443,
        path,
    )
    req.headers = http.Headers(list(headers))
    req.content = body
    req.timestamp_start, req.timestamp_end = sent, sent + 0.001
    resp = flow.response
    assert resp is not None
    resp.status_code = 200
    resp.headers = http.Headers(list(answer_headers))
    resp.content = answer
    resp.timestamp_start, resp.timestamp_end = answered - 0.001, answered
    return flow

"""The recorder addon in-process (mitmproxy's own test helpers), for what timing makes awkward
to provoke through real processes."""

import json
import time

import pytest
from mitmproxy.test import taddons, tflow

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record.addon import GwsRecorder


@pytest.mark.e2e  # the recorder writes through its worker process
def test_an_answer_after_the_timeout_is_recorded_not_dropped(tmp_path):
    path = tmp_path / "late.gwscap"
    recorder = GwsRecorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, gws_capture=str(path), gws_timeout="0.5")
        flow = tflow.tflow(resp=True)
        flow.request.method = "POST"
        flow.request.path = "/api/v2/me/chats/C1"
        flow.request.content = json.dumps(
            {"operationName": "UpdateUserData", "userData": {"K": 1}}
        ).encode()
        flow.response.content = b'{"statusCode": 0}'
        recorder.request(flow)
        recorder.advance(time.time() + 1)  # the timeout passes with no answer
        recorder.response(flow)
        recorder.done()
    with CaptureReader(str(path)) as reader:
        entries = reader.index()
        pairs = [e.summary for e in entries if e.kind == Kind.PAIR]
        raws = [e for e in entries if e.kind == Kind.RAW]
        assert [p["status"] for p in pairs] == ["timeout"]
        assert len(raws) == 1
        assert raws[0].summary["reason"].startswith("late answer (HTTP 200)")
        assert reader.body(raws[0])["bytes"] == b'{"statusCode": 0}'

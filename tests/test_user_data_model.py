"""One rule for user data: whatever operation an agent sends on whatever media, the simulator's
user data afterwards is what the verdict expects of it (and the verdict calls it applied), the
wire keeps voice's repeated keys as the GWS model says, and a refused request changes nothing.

The simulator runs in-process, driven over HTTP as an agent would, and starts every example from
the same state (so that a failure shrinks); the property is checked after each operation of a
random sequence, on every media.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwsproxy import gws
from gwsproxy.sim.server import PASSWORD, RunningSim, SimConfig, start_simulator
from gwsproxy.verdict import VerdictName, expected, judge, same

AGENT = "agent1"
# Keys the generated interactions hold (so operations meet them) and keys they do not.
KEYS = st.sampled_from(["Subject", "ServiceType", "CustomerSegment", "New", "Other"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)
USER_DATA = st.dictionaries(KEYS, VALUES, max_size=3)
# Every operation with what it names, and each without it (which GWS may refuse).
BODIES = st.one_of(
    st.builds(
        lambda op, data: {"operationName": op, "userData": data},
        st.sampled_from([gws.UPDATE, gws.ATTACH]),
        USER_DATA,
    ),
    st.builds(lambda keys: {"operationName": gws.DELETE, "keys": keys}, st.lists(KEYS, max_size=3)),
    st.builds(lambda key: {"operationName": gws.DELETE, "key": key}, KEYS),
    st.builds(lambda key: {"operationName": gws.DELETE_PAIR, "key": key}, KEYS),
    st.sampled_from([{"operationName": op} for op in gws.OPERATIONS]),
)


def basic(user: str) -> dict[str, str]:
    return {"Authorization": gws.basic_authorization(user, PASSWORD)}


async def wire_pairs(http: aiohttp.ClientSession, url: str, key: str) -> list[tuple[str, Any]]:
    """The interaction's user data as the wire carries it: every pair, repeated keys too."""
    async with http.get(url) as r:
        assert r.status == 200
        doc = json.loads(await r.text(), object_pairs_hook=gws.json_object)
    user_data = doc[key].get("userData")  # voice omits emptied user data
    return list(user_data.items()) if user_data is not None else []


@dataclass(frozen=True, slots=True)
class Driver:
    """One in-process simulator on one event loop, reset to its first state for each example."""

    runner: asyncio.Runner
    url: str
    http: aiohttp.ClientSession
    first_state: dict[str, Any]
    first_of: dict[str, dict[str, Any]]  # media -> the agent's first interaction, as listed

    def run(self, media: gws.Media, spelling: int, docs: list[dict[str, Any]]) -> None:
        self.runner.run(self._operate(media, spelling, docs))

    async def _operate(self, media: gws.Media, spelling: int, docs: list[dict[str, Any]]) -> None:
        async with self.http.put(f"{self.url}/_sim/state", json=self.first_state) as r:
            assert r.status == 200
        ixn = self.first_of[media.name]
        collection = media.collections[spelling % len(media.collections)]
        if media.name == "openmedia":
            collection += "/" + ixn["mediaType"]
        path = f"/api/v2/me/{collection}/{ixn['id']}"
        pairs = await wire_pairs(self.http, self.url + path, media.object_key)
        for doc in docs:
            pairs = await step(self.http, self.url, path, media, doc, pairs)


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    async def start() -> tuple[RunningSim, aiohttp.ClientSession, Driver]:
        running = await start_simulator(SimConfig(port=0, agents=1, delay=0.0, jitter=0.0))
        http = aiohttp.ClientSession(headers=basic(AGENT))
        async with http.get(f"{running.url}/_sim/state") as r:
            state = await r.json()
        first_of = {}
        for media in gws.MEDIA:
            async with http.get(f"{running.url}/api/v2/me/{media.collections[0]}") as r:
                first_of[media.name] = (await r.json())[media.collections[0]][0]
        return running, http, Driver(runner, running.url, http, state, first_of)

    with asyncio.Runner() as runner:
        running, http, driver = runner.run(start())
        try:
            yield driver
        finally:
            runner.run(http.close())
            runner.run(running.stop())


async def step(
    http: aiohttp.ClientSession,
    base: str,
    path: str,
    media: gws.Media,
    doc: dict[str, Any],
    before_pairs: list[tuple[str, Any]],
) -> list[tuple[str, Any]]:
    """Send one operation; check the user data it leaves, and return that."""
    body = json.dumps(doc)
    async with http.post(base + path, data=body) as r:
        status, answer = r.status, await r.json()
    after_pairs = await wire_pairs(http, base + path, media.object_key)
    # What a recording of this exchange holds, and what the verdict makes of it.
    req = gws.classify_request("POST", path, body)
    assert isinstance(req, gws.UserDataRequest)
    before, after = dict(before_pairs), dict(after_pairs)
    if status != 200:
        assert (status, answer["statusCode"]) in ((400, 1), (400, 2)), (doc, answer)
        assert same(after_pairs, before_pairs), f"{doc} was refused but changed the user data"
        return after_pairs
    assert answer["statusCode"] == 0, answer
    model = gws.apply_user_data(before_pairs, req.operation, req.requested, media.name)
    assert same(after_pairs, model), (doc, before_pairs, after_pairs)
    want = expected(before, req.operation, req.requested, media.name)
    assert same(after, want), (doc, before, after, want)
    verdict = judge("matched", req.operation, media.name, req.requested, before, after)
    assert verdict.name == VerdictName.APPLIED, (doc, verdict)
    return after_pairs


@pytest.mark.parametrize("media", gws.MEDIA, ids=lambda m: m.name)
@settings(max_examples=25, deadline=None)
@given(spelling=st.integers(0, 1), docs=st.lists(BODIES, min_size=1, max_size=6))
def test_the_simulator_leaves_what_the_verdict_expects(
    driver: Driver, media: gws.Media, spelling: int, docs: list[dict[str, Any]]
) -> None:
    driver.run(media, spelling, docs)

"""A real agent desktop: headless Chromium runs the official CometD JavaScript client against the
simulator through `gwsproxy record`, while Playwright saves the session as a HAR, as a support
engineer gets it from an agent's browser. Importing that HAR must give the pairs the live
recording gave (same referenceIds, before, after, verdicts), and none of the HAR's secrets.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gwsproxy.capture.reader import CaptureReader
from gwsproxy.processes import gwsproxy_command

if TYPE_CHECKING:
    from conftest import Procs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE = Path(__file__).parent / "browser"
OPS = 5
USER, PASSWORD = "agent1", "password"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def browser_session(
    url: str, transport: str, har: Path, proxy: str | None = None, spki: str | None = None
) -> None:
    """Open the agent page at `url` (the recorder, or GWS itself through `proxy`), let it make
    OPS updates, save the HAR. `spki`: the hash of a CA the browser trusts (Chromium's flag)."""
    from playwright.sync_api import Route, sync_playwright

    def serve_page(route: Route) -> None:  # the page and the CometD modules, from the tests
        name = route.request.url.split("/desktop/", 1)[1].split("?", 1)[0]
        kind = "text/html" if name.endswith(".html") else "text/javascript"
        route.fulfill(path=str(PAGE / name), content_type=kind)

    with sync_playwright() as p:
        # Chromium checks requests to loopback addresses ("local network access"); the test's
        # page and GWS are both on 127.0.0.1.
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-features=LocalNetworkAccessChecks",
                *([f"--ignore-certificate-errors-spki-list={spki}"] if spki else []),
            ],
            # As `gwsproxy record --mode regular` says: loopback goes direct unless told so.
            proxy={"server": proxy, "bypass": "<-loopback>"} if proxy else None,
        )
        try:
            context = browser.new_context(record_har_path=str(har))
            context.route("**/desktop/**", serve_page)
            page = context.new_page()
            query = f"user={USER}&password={PASSWORD}&transport={transport}&ops={OPS}"
            page.goto(f"{url}/desktop/agent.html?{query}")
            page.wait_for_function("window.done || window.failed", timeout=60_000)
            assert page.evaluate("window.failed") is None, page.inner_text("#log")
            context.close()  # writes the HAR
        finally:
            browser.close()


def exported(procs: Procs, capture: Path) -> list[dict[str, Any]]:
    done = procs.run(gwsproxy_command("export", str(capture)))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def what_matters(pair: dict[str, Any]) -> tuple[Any, ...]:
    return (
        pair["reference_id"],
        pair["operation"],
        pair["interaction_id"],
        json.dumps(pair["before"], sort_keys=True),
        json.dumps(pair["after"], sort_keys=True),
        pair["status"],
        pair.get("verdict"),
    )


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_a_browser_har_imports_to_the_pairs_a_live_recording_made(
    procs: Procs, tmp_path: Path, transport: str
) -> None:
    sim = procs.sim()
    live, har, imported = tmp_path / "live.gwscap", tmp_path / "agent.har", tmp_path / "har.gwscap"
    recorder, port = procs.record(sim.url, live)
    browser_session(f"http://127.0.0.1:{port}", transport, har)
    assert recorder.signal() == 0, recorder.describe()

    entries = json.loads(har.read_text())["log"]["entries"]
    if transport == "websocket":
        assert any(e.get("_webSocketMessages") for e in entries), "no WebSocket in the HAR"

    done = procs.run(gwsproxy_command("import", str(har), "-o", str(imported)), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    recorded, from_har = exported(procs, live), exported(procs, imported)
    assert len(recorded) == OPS and all(p["status"] == "matched" for p in recorded), recorded
    assert sorted(map(what_matters, from_har), key=repr) == sorted(
        map(what_matters, recorded), key=repr
    )

    # Whatever the HAR holds in clear (Basic credentials, the session cookies, Bayeux clientIds)
    # must not reach the capture, in any record.
    secrets = {USER + ":" + PASSWORD}
    for entry in entries:
        for header in entry["request"]["headers"]:
            if header["name"].lower() in ("authorization", "cookie"):
                secrets.add(header["value"])
                secrets.update(
                    part.split("=", 1)[1] for part in header["value"].split("; ") if "=" in part
                )
    secrets.update(re.findall(r'clientId\\?"\s*:\s*\\?"([0-9a-z]+)', har.read_text()))
    with CaptureReader(imported) as reader:
        records = [(entry.summary, body) for entry, body in reader.records()]
    text = json.dumps(records, default=repr)
    leaked = sorted(s for s in secrets if s and s in text)
    assert not leaked, f"secrets of the HAR in the capture: {leaked}"


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_mitmproxys_own_har_of_a_session_imports_to_the_pairs_it_recorded(
    procs: Procs, tmp_path: Path, transport: str
) -> None:
    """mitmdump with our addon and its own HAR writer (`--set hardump=FILE`) on the same
    traffic: importing the HAR gives the pairs the addon recorded live."""
    import asyncio

    from gwsproxy.sim.agents import LoadConfig, run_load

    sim = procs.sim()
    live, har, imported = tmp_path / "live.gwscap", tmp_path / "dump.har", tmp_path / "har.gwscap"
    # mitmproxy's HAR writer reads the WebSocket messages at the end: keep them in memory.
    options = {"hardump": str(har), "gws_trim_websocket": "false"}
    mitm = procs.mitmdump(sim.url, live, options=options)
    config = LoadConfig(
        target=f"http://127.0.0.1:{mitm.port}", agents=2, ops=8, transport=transport, seed=7
    )
    report = asyncio.run(run_load(config))
    assert report.sent == 16 and report.notified + report.errors == 16, report
    assert mitm.signal() == 0, mitm.describe()  # mitmdump writes the HAR as it stops

    done = procs.run(gwsproxy_command("import", str(har), "-o", str(imported)), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    recorded, from_har = exported(procs, live), exported(procs, imported)
    assert len(recorded) == 16
    assert sorted(map(what_matters, from_har), key=repr) == sorted(
        map(what_matters, recorded), key=repr
    )


def test_a_browser_pointed_at_the_recorder_as_its_proxy_is_recorded(
    procs: Procs, tmp_path: Path
) -> None:
    """Regular (explicit proxy) mode, set up as the recorder's banner says."""
    sim = procs.sim()
    live = tmp_path / "proxied.gwscap"
    recorder, port = procs.record(sim.url, live, "--mode", "regular")
    proxy = f"http://127.0.0.1:{port}"
    procs.wait_until(lambda: "--proxy-bypass-list" in recorder.stderr(), 10, "the banner")
    assert f"--proxy-server={proxy}" in recorder.stderr()
    browser_session(sim.url, "websocket", tmp_path / "agent.har", proxy=proxy)
    assert recorder.signal() == 0, recorder.describe()
    recorded = exported(procs, live)
    assert len(recorded) == OPS and all(p["status"] == "matched" for p in recorded), recorded


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_a_browser_through_the_recorder_to_an_https_gws_trusts_its_ca_by_spki(
    procs: Procs, tmp_path: Path, transport: str
) -> None:
    """The explicit-proxy set-up a person makes for an HTTPS GWS: the recorder trusts GWS's CA
    (--upstream-ca), the browser trusts the recorder's CA by the SPKI hash `gwsproxy ca`
    prints, and the agent page talks https and wss to GWS through it."""
    sim = procs.sim("--tls", "--csrf")  # the page sends the token GWS announces
    assert sim.url.startswith("https://") and sim.ca is not None
    confdir = tmp_path / "mitmproxy"
    told = procs.run(gwsproxy_command("ca", "--confdir", str(confdir)))
    assert told.returncode == 0, told.stderr
    spki = re.search(r"^SPKI hash \(SHA-256\):\s+(\S+)$", told.stdout, re.M)
    assert spki, told.stdout
    live = tmp_path / "https.gwscap"
    recorder, port = procs.record(
        sim.url, live, "--mode", "regular", "--confdir", str(confdir), "--upstream-ca", str(sim.ca)
    )
    proxy = f"http://127.0.0.1:{port}"
    browser_session(sim.url, transport, tmp_path / "agent.har", proxy=proxy, spki=spki[1])
    assert recorder.signal() == 0, recorder.describe()
    recorded = exported(procs, live)
    assert len(recorded) == OPS, recorded
    assert all(p["status"] == "matched" and p["verdict"] == "applied" for p in recorded), recorded
    assert "certificate" not in recorder.stderr().lower(), recorder.stderr()
    procs.assert_no_secrets(live, sim.session_secrets())

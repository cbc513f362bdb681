"""`gwsproxy record`'s mitmproxy options, in this process (no proxy runs): the listeners its
modes and upstreams make, the trust options, `--set`, and mitmproxy's config.yaml in
`--confdir`, with mitmdump's precedence (config file, then ours, then `--set`)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import certifi
import pytest
import pytest_asyncio

from gwsproxy import tls
from gwsproxy.cli import build_parser
from gwsproxy.errors import GwsProxyError
from gwsproxy.processes import free_port
from gwsproxy.record.command import (
    RecordConfig,
    RecordError,
    UpstreamTlsHint,
    configure,
    listens,
    recording_master,
)

GWS = "https://gws.example:8443"


def _listens(*upstreams: str, modes: tuple[str, ...] = ("reverse",), port: int = 9000) -> list:
    return listens(RecordConfig(upstreams, "x.gwscap", port=port, modes=modes))


# ---- listeners -----------------------------------------------------------------------------


def test_one_upstream_is_one_reverse_proxy_on_the_port() -> None:
    [one] = _listens(GWS + "/")
    assert one.spec == f"reverse:{GWS}@9000"
    assert (one.url, one.target) == ("http://127.0.0.1:9000", f"-> {GWS}")


def test_a_cluster_listens_on_consecutive_ports_or_the_ones_given() -> None:
    found = _listens("http://gws1:8090", "http://gws2:8090@9100", "http://gws3:8090")
    assert [(f.port, f.target) for f in found] == [
        (9000, "-> http://gws1:8090"),
        (9100, "-> http://gws2:8090"),
        (9001, "-> http://gws3:8090"),
    ]


def test_mitmproxys_own_mode_specs_are_taken_as_they_are() -> None:
    found = _listens(modes=("regular", "upstream:http://proxy.corp:3128", f"reverse:{GWS}@9300"))
    assert [f.spec for f in found] == [
        "regular@9000",
        "upstream:http://proxy.corp:3128@9001",
        f"reverse:{GWS}@9300",
    ]
    assert found[0].target == "(as an HTTP proxy)"
    assert "proxy.corp:3128" in found[1].target
    assert found[2].target == f"-> {GWS}"


def test_regular_mode_ignores_upstream_as_before() -> None:
    [one] = _listens(GWS, modes=("regular",))
    assert one.spec == "regular@9000"


@pytest.mark.parametrize(
    ("upstreams", "modes", "message"),
    [
        ((), ("reverse",), "reverse mode needs --upstream URL"),
        (("ftp://gws",), ("reverse",), "--upstream: 'ftp://gws' is not an http or https URL"),
        (("http://gws@70000",), ("reverse",), "70000 is not a port"),
        ((), ("sideways",), "--mode sideways: unknown mode"),
        (("http://a@9000", "http://b"), ("reverse",), "port 9000 is given to two listeners"),
    ],
)
def test_bad_modes_and_upstreams_are_one_line_errors(
    upstreams: tuple[str, ...], modes: tuple[str, ...], message: str
) -> None:
    with pytest.raises(RecordError) as error:
        _listens(*upstreams, modes=modes)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_command_line_keeps_its_old_spellings_and_takes_the_new_ones() -> None:
    parse = build_parser().parse_args
    old = parse(["record", "--upstream", "http://gws:8090", "--mode", "regular"])
    assert (old.upstream, old.mode) == (["http://gws:8090"], ["regular"])
    default = parse(["record", "--upstream", GWS])
    assert default.mode is None and default.confdir == "~/.mitmproxy"
    new = parse(
        ["record", "--upstream", "http://a", "--upstream", "http://b@9001", "--upstream-ca",
         "ca.pem", "--insecure", "--client-cert", "me.pem", "--set", "a=1", "--set", "b=2"]
    )  # fmt: skip
    assert new.upstream == ["http://a", "http://b@9001"] and new.upstream_ca == ["ca.pem"]
    assert new.insecure and new.client_cert == "me.pem" and new.sets == ["a=1", "b=2"]


# ---- mitmproxy's options -------------------------------------------------------------------


Make = Callable[..., tuple[Any, Any]]


@pytest_asyncio.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """configure() on a real DumpMaster (not run: it wants a running loop, hence the async
    tests); the recorder in-process, closed after."""
    made: list[Any] = []
    confdir = tmp_path / "mitmproxy"
    confdir.mkdir()

    def build(**fields: Any) -> tuple[Any, Any]:
        fields = {"upstreams": ("http://127.0.0.1:1",), "output": str(tmp_path / "c.gwscap"),
                  "port": free_port(), "confdir": str(confdir), **fields}  # fmt: skip
        fields["sets"] = ("gws_worker=false", *fields.get("sets", ()))  # no worker process
        config = RecordConfig(**fields)
        master, recorder = recording_master(config, io.StringIO())
        made.append(recorder)
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        configure(master, config, scratch)
        return master.options, recorder

    yield build
    for recorder in made:
        recorder.close()


@pytest.mark.asyncio
async def test_defaults_are_the_recorders(make: Make, tmp_path: Path) -> None:
    opts, recorder = make()
    assert opts.mode == [f"reverse:http://127.0.0.1:1@{opts.listen_port}"]
    assert opts.connection_strategy == "lazy" and opts.gws_trim_websocket is True
    assert not opts.ssl_insecure and opts.ssl_verify_upstream_trusted_ca is None
    assert recorder.path == str(tmp_path / "c.gwscap")


@pytest.mark.asyncio
async def test_upstream_ca_is_added_to_the_usual_trust_store(make: Make, tmp_path: Path) -> None:
    cert = tls.throwaway(tmp_path / "ca")
    assert cert.ca is not None
    opts, _ = make(upstream_ca=(str(cert.ca),))
    bundle = Path(opts.ssl_verify_upstream_trusted_ca).read_bytes()
    assert cert.ca.read_bytes().strip() in bundle
    assert Path(certifi.where()).read_bytes().strip() in bundle  # added to, not replaced


@pytest.mark.asyncio
async def test_insecure_and_client_cert_become_mitmproxys_options(
    make: Make, tmp_path: Path
) -> None:
    mine = tls.throwaway(tmp_path / "me")
    opts, _ = make(insecure=True, client_cert=str(mine.certfile))
    assert opts.ssl_insecure is True and opts.client_certs == str(mine.certfile)
    with pytest.raises(RecordError, match="--client-cert nothere.pem: no such file"):
        make(client_cert="nothere.pem")
    with pytest.raises(GwsProxyError, match="--upstream-ca nothere.pem: no such file"):
        make(upstream_ca=("nothere.pem",))


@pytest.mark.asyncio
async def test_config_file_then_ours_then_set(make: Make, tmp_path: Path) -> None:
    (tmp_path / "mitmproxy" / "config.yaml").write_text(
        "connection_strategy: eager\n"  # ours (lazy) wins over the file
        "stream_large_bodies: 3m\n"  # the file's, nobody else says
        "anticache: true\n"  # the file's, but --set says otherwise
        "gws_max_body: 1234\n"  # an option of our addon, known once it is loaded
        "gws_timeout: '4'\n"  # the file's, as no --timeout is given
        "gws_capture: elsewhere.gwscap\n"  # -o says where the capture goes
    )
    opts, recorder = make(sets=("anticache=false", "gws_mask_keys=A", "gws_mask_keys=B"))
    assert opts.connection_strategy == "lazy"
    assert opts.stream_large_bodies == "3m"
    assert opts.anticache is False
    assert opts.gws_max_body == 1234 and recorder.max_body == 1234
    assert recorder.settings["timeout"] == 4.0
    assert opts.gws_mask_keys == ["A", "B"]  # a list option given twice
    assert recorder.path == str(tmp_path / "c.gwscap")
    assert not (tmp_path / "elsewhere.gwscap").exists()


@pytest.mark.asyncio
async def test_set_beats_our_own_options(make: Make) -> None:
    opts, _ = make(sets=("connection_strategy=eager", "gws_trim_websocket=false"))
    assert opts.connection_strategy == "eager" and opts.gws_trim_websocket is False


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch=1", "--set nosuch=1: no option nosuch"),
        ("ssl_insecure=maybe", "--set"),
        ("listen_port=x", "Not an integer: x"),
        ("novalue", "--set novalue: expected NAME=VALUE"),
    ],
)
async def test_a_bad_set_is_one_line_and_creates_no_capture(
    make: Make, tmp_path: Path, spec: str, message: str
) -> None:
    with pytest.raises(RecordError) as error:
        make(sets=(spec,))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "c.gwscap").exists()


@pytest.mark.asyncio
async def test_a_broken_config_file_names_itself(make: Make, tmp_path: Path) -> None:
    (tmp_path / "mitmproxy" / "config.yaml").write_text("listen_port: [1, 2\n")
    with pytest.raises(RecordError, match=r"config\.yaml"):
        make()
    assert not (tmp_path / "c.gwscap").exists()


# ---- the hint on a certificate failure ------------------------------------------------------


def test_the_first_upstream_certificate_failure_is_said_once_with_its_fix() -> None:
    out = io.StringIO()
    hint = UpstreamTlsHint(out)
    why = "Certificate verify failed: self-signed certificate in certificate chain"
    for _ in range(5):
        conn = SimpleNamespace(address=("127.0.0.1", 8443), sni=None, error=why)
        hint.tls_failed_server(SimpleNamespace(conn=conn))
    lines = out.getvalue().splitlines()
    assert lines == [
        f"upstream https://127.0.0.1:8443: {why}; trust its CA with --upstream-ca CA.pem"
        " (or skip the check: --insecure)"
    ]

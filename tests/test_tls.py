"""Throwaway certificates and the client contexts that trust them (in process, on loopback)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from gwsproxy import tls


async def _handshake(cert: tls.ServerCert, client: ssl.SSLContext, host: str) -> str:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls.server_context(cert))
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=host
        )
        data = await reader.read()
        writer.close()
        return data.decode()
    finally:
        server.close()


def test_a_throwaway_certificate_is_trusted_with_its_ca_only(tmp_path: Path) -> None:
    cert = tls.throwaway(tmp_path)
    assert cert.ca is not None and (cert.keyfile.stat().st_mode & 0o777) == 0o600
    trusted = tls.client_context([str(cert.ca)])
    assert asyncio.run(_handshake(cert, trusted, "127.0.0.1")) == "hello"
    assert asyncio.run(_handshake(cert, trusted, "localhost")) == "hello"
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate in"):
        asyncio.run(_handshake(cert, tls.client_context(), "127.0.0.1"))
    assert asyncio.run(_handshake(cert, tls.client_context(insecure=True), "x")) == "hello"


def test_its_fingerprint_is_the_served_certificate(tmp_path: Path) -> None:
    cert = tls.throwaway(tmp_path)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_pem_x509_certificates(cert.certfile.read_bytes())[0]
    assert cert.sha256 == tls.fingerprint(leaf.public_bytes(serialization.Encoding.DER))
    assert tls.given(str(cert.certfile), str(cert.keyfile)).sha256 == cert.sha256


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    cert = tls.throwaway(tmp_path / "a")
    other = tls.throwaway(tmp_path / "b")
    with pytest.raises(tls.TlsError, match="--certfile nope.pem: no such file"):
        tls.given("nope.pem", None)
    with pytest.raises(tls.TlsError, match="cannot serve HTTPS with"):
        tls.given(str(cert.certfile), str(other.keyfile))
    with pytest.raises(tls.TlsError, match="--cacert .*key.pem"):
        tls.client_context([str(cert.keyfile)])
    with pytest.raises(tls.TlsError, match="not a PEM certificate"):
        tls.bundle_with_defaults([str(tmp_path / "a" / "key.pem")], tmp_path / "bundle.pem")


def test_the_upstream_bundle_adds_to_the_default_trust(tmp_path: Path) -> None:
    import certifi

    cert = tls.throwaway(tmp_path)
    bundle = tls.bundle_with_defaults([str(cert.ca)], tmp_path / "bundle.pem").read_bytes()
    assert bundle.startswith(Path(certifi.where()).read_bytes().rstrip(b"\n"))
    assert cert.ca.read_bytes().strip() in bundle
    context = ssl.create_default_context(cafile=str(tmp_path / "bundle.pem"))
    assert asyncio.run(_handshake(cert, context, "127.0.0.1")) == "hello"

"""`gwsproxy ca`: mitmproxy's CA, what identifies it, and how to trust it."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import load_pem_x509_certificate

from gwsproxy import cli


def said(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str], str]:
    code = cli.main(["ca", *args])
    out = capsys.readouterr()
    fields = dict(line.split(":", 1) for line in out.out.splitlines()[:3])
    return code, {k: v.strip() for k, v in fields.items()}, out.out + out.err


def test_the_ca_is_made_once_and_named_by_what_browsers_check(tmp_path: Path, capsys) -> None:
    code, fields, text = said(capsys, "--confdir", str(tmp_path))
    assert code == 0, text
    pem = Path(fields["mitmproxy CA certificate"])
    assert pem == tmp_path / "mitmproxy-ca-cert.pem" and pem.exists()
    cert = load_pem_x509_certificate(pem.read_bytes())
    assert fields["SHA-256 fingerprint"] == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert fields["SPKI hash (SHA-256)"] == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    # Each way to trust it names it: the file for the system, curl and Firefox, the hash for
    # Chromium, with the loopback bypass Chromium needs for a proxy on 127.0.0.1.
    assert f"--ignore-certificate-errors-spki-list={fields['SPKI hash (SHA-256)']}" in text
    assert "--proxy-bypass-list='<-loopback>'" in text
    assert f"--cacert {pem}" in text and "update-ca-certificates" in text
    # Asked again, it is the same CA, not a new one.
    code, again, _ = said(capsys, "--confdir", str(tmp_path))
    assert code == 0 and again == fields


def test_a_confdir_that_cannot_hold_a_ca_is_one_line(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = cli.main(["ca", "--confdir", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "mitmproxy's CA" in err, err

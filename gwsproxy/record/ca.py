"""`gwsproxy ca`: mitmproxy's certificate authority, and how to make a client trust it.

In regular (explicit proxy) mode, or in front of an HTTPS GWS, clients meet certificates that
mitmproxy makes on the fly, signed by its own CA (`mitmproxy-ca-cert.pem` in its confdir,
created on first use). A browser or a tool trusts them once it trusts that CA, or (Chromium)
once it is told the CA's public key hash.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from gwsproxy.errors import GwsProxyError

DEFAULT_CONFDIR = "~/.mitmproxy"
BASENAME = "mitmproxy"  # mitmproxy's own name for its CA files
KEY_SIZE = 2048  # mitmproxy's default (its `key_size` option)


class CaError(GwsProxyError):
    """The CA cannot be read or made."""


@dataclass(frozen=True, slots=True)
class Authority:
    pem: Path  # the CA certificate, PEM
    sha256: str  # of the certificate (DER), as browsers show it: AA:BB:...
    spki: str  # base64 SHA-256 of its SubjectPublicKeyInfo: Chromium's spki-list form


def authority(confdir: str = DEFAULT_CONFDIR) -> Authority:
    """mitmproxy's CA in `confdir`, made there first if there is none (as mitmproxy does)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_pem_x509_certificate
    from mitmproxy.certs import CertStore

    folder = Path(confdir).expanduser()
    try:
        CertStore.from_store(folder, BASENAME, KEY_SIZE)
        pem = folder / f"{BASENAME}-ca-cert.pem"
        cert = load_pem_x509_certificate(pem.read_bytes())
    except (OSError, ValueError) as e:
        raise CaError(f"cannot read or make mitmproxy's CA in {folder}: {e}") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Authority(
        pem=pem,
        sha256=hashlib.sha256(der).hexdigest().upper(),
        spki=base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii"),
    )


def how_to_trust(ca: Authority, proxy: str = "http://127.0.0.1:8080") -> list[str]:
    """Lines for the user: where the CA is, what identifies it, and one way per client."""
    fingerprint = ":".join(ca.sha256[i : i + 2] for i in range(0, len(ca.sha256), 2))
    return [
        f"mitmproxy CA certificate: {ca.pem}",
        f"SHA-256 fingerprint:      {fingerprint}",
        f"SPKI hash (SHA-256):      {ca.spki}",
        "",
        "Trust it in one of these ways:",
        f"  system (Debian/Ubuntu): sudo cp {ca.pem} /usr/local/share/ca-certificates/"
        "mitmproxy.crt && sudo update-ca-certificates",
        f"  Chromium:  chromium --proxy-server={proxy} --proxy-bypass-list='<-loopback>' "
        f"--ignore-certificate-errors-spki-list={ca.spki}",
        "             (Chromium bypasses proxies for loopback addresses unless told "
        "--proxy-bypass-list='<-loopback>')",
        '  Firefox:   policies.json: {"policies": {"Certificates": {"Install": '
        f'["{ca.pem}"]}}}}}}',
        f"  curl:      curl --proxy {proxy} --cacert {ca.pem} https://...",
        f"  Python:    SSL_CERT_FILE={ca.pem} (or REQUESTS_CA_BUNDLE for requests)",
    ]

"""TLS for our own servers and clients: throwaway certificates, server and client contexts.

`gwsproxy sim --tls` and `gwsproxy serve --tls` serve HTTPS with a throwaway certificate
authority made here (so a client trusts it the way it trusts a company CA: with the CA file);
replay, load and the recorder trust a CA *in addition to* the usual ones, never instead.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gwsproxy.errors import GwsProxyError, one_line

DEFAULT_NAMES = ("127.0.0.1", "localhost", "::1")


class TlsError(GwsProxyError):
    """A certificate or key cannot be read, made or used."""


@dataclass(frozen=True, slots=True)
class ServerCert:
    certfile: Path  # the server's certificate followed by its CA's (PEM)
    keyfile: Path  # its private key (PEM)
    ca: Path | None  # the CA certificate a client trusts (None: not ours to say)
    sha256: str  # of the server's certificate (DER), AA:BB:... as browsers show it


def fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def throwaway(folder: Path, names: Iterable[str] = DEFAULT_NAMES) -> ServerCert:
    """A new CA and a server certificate it signs for `names` (addresses or host names), valid
    for a week, written into `folder` as ca.pem, cert.pem (certificate + CA) and key.pem (0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gwsproxy throwaway CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    first = next(iter(names), "localhost")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ServerCert(
        cert_file, key_file, ca_file, fingerprint(cert.public_bytes(serialization.Encoding.DER))
    )


def given(certfile: str, keyfile: str | None) -> ServerCert:
    """The user's own certificate (and key; None when the certificate file holds it too)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_path = Path(certfile).expanduser()
    key_path = Path(keyfile).expanduser() if keyfile else cert_path
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as e:
        raise TlsError(f"--certfile {certfile}: {_why(e)}") from None
    found = ServerCert(
        cert_path, key_path, None, fingerprint(cert.public_bytes(serialization.Encoding.DER))
    )
    server_context(found)  # the key must exist and fit the certificate: say so now
    return found


def told(cert: ServerCert) -> str:
    """The line a server prints under its https:// banner: what a client trusts, the print."""
    if cert.ca is not None:
        trust = f"trust its CA: {cert.ca} (--upstream-ca / --cacert PATH)"
    else:
        trust = f"certificate {cert.certfile}"
    return f"TLS: {trust}  SHA-256 {cert.sha256}"


def server_context(cert: ServerCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert.certfile, cert.keyfile)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(
            f"cannot serve HTTPS with {cert.certfile} and {cert.keyfile}: {_why(e)}"
        ) from None
    return context


def client_context(cacert: Sequence[str] = (), insecure: bool = False) -> ssl.SSLContext:
    """How our clients check a GWS: the system's trust store plus each `cacert` file, or, when
    `insecure`, no check at all (the caller warns)."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    for path in cacert:
        try:
            context.load_verify_locations(cafile=str(Path(path).expanduser()))
        except (OSError, ssl.SSLError) as e:
            raise TlsError(f"--cacert {path}: {_why(e)}") from None
    return context


def bundle_with_defaults(extra: Sequence[str], out: Path) -> Path:
    """One PEM file: certifi's CAs (what mitmproxy trusts by default) and then each `extra` CA.
    mitmproxy's `ssl_verify_upstream_trusted_ca` replaces its trust store; this adds to it."""
    import certifi

    parts = [Path(certifi.where()).read_bytes()]
    for path in extra:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as e:
            raise TlsError(f"--upstream-ca {path}: {_why(e)}") from None
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise TlsError(f"--upstream-ca {path}: not a PEM certificate file")
        parts.append(data)
    out.write_bytes(b"\n".join(p.rstrip(b"\n") + b"\n" for p in parts))
    return out


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and not isinstance(e, ssl.SSLError):
        return e.strerror.lower()
    return one_line(e)

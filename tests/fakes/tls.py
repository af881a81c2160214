"""TLS material for the destination sink (tests/fakes/sink.py): a throwaway CA, a server certificate for
127.0.0.1/localhost and a client certificate, all EC P-256 and valid for two days, as PEM text and as the
files the sink's listeners and clients load.

    certs = SinkCerts.generate()
    certs.write(directory)             # ca.pem, server.pem, server-key.pem, client.pem, client-key.pem
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class SinkCerts:
    """PEM text of a throwaway CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    @classmethod
    def generate(cls) -> SinkCerts:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("Headwater sink test CA", ca_key, ca_key, None, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _certificate("127.0.0.1", server_key, ca_key, ca, ca=False, server=True)
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _certificate("headwater-client", client_key, ca_key, ca, ca=False, server=False)
        return cls(_pem(ca), _pem(server), _key_pem(server_key), _pem(client), _key_pem(client_key))

    def write(self, directory: Path) -> None:
        """Write ca.pem, server.pem, server-key.pem, client.pem and client-key.pem into ``directory``."""
        for filename, text in (
            ("ca.pem", self.ca_cert),
            ("server.pem", self.server_cert),
            ("server-key.pem", self.server_key),
            ("client.pem", self.client_cert),
            ("client-key.pem", self.client_key),
        ):
            (directory / filename).write_text(text)


def _certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    *,
    ca: bool,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        issuer_public = issuer_key.public_key()
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
        )
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    if server:
        names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()

"""RSA key material for the OAuth 2.0 JWT bearer flow: what document 000's first steps make with openssl.

``generate`` writes the three files Salesforce's guide asks for, under the same names:

    keypair.key      the RSA key pair (PEM, traditional "RSA PRIVATE KEY"), mode 0600
    certificate.crt  a self-signed x509 certificate of its public key (PEM), uploaded to the app
    private.key      the same private key as unencrypted PKCS#8 (PEM), mode 0600, signs assertions

``load_rsa_certificate`` is the check an uploaded certificate must pass.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

KEYPAIR, CERTIFICATE, PRIVATE_KEY = "keypair.key", "certificate.crt", "private.key"
MIN_BITS = 2048


class KeyFileExists(Exception):
    """Files that ``generate`` would overwrite; it wrote nothing."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(", ".join(str(p) for p in paths))
        self.paths = paths


@dataclass(frozen=True)
class KeyFiles:
    keypair: Path
    certificate: Path
    private_key: Path

    def as_json(self) -> dict[str, str]:
        return {
            "keyPair": str(self.keypair),
            "certificate": str(self.certificate),
            "privateKey": str(self.private_key),
        }


def generate(
    directory: Path,
    *,
    common_name: str = "headwater",
    organization: str | None = None,
    days: int = 365,
    bits: int = MIN_BITS,
    force: bool = False,
) -> KeyFiles:
    """Create a key pair, its self-signed certificate and its PKCS#8 form in ``directory``.

    Raises :class:`KeyFileExists` (having written nothing) when a file is already there and not ``force``.
    """
    if bits < MIN_BITS:
        raise ValueError(f"an RSA key for the JWT bearer flow needs at least {MIN_BITS} bits")
    files = KeyFiles(directory / KEYPAIR, directory / CERTIFICATE, directory / PRIVATE_KEY)
    existing = [p for p in (files.keypair, files.certificate, files.private_key) if p.exists()]
    if existing and not force:
        raise KeyFileExists(existing)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    _write(files.keypair, _private_pem(key, serialization.PrivateFormat.TraditionalOpenSSL), 0o600)
    _write(files.private_key, _private_pem(key, serialization.PrivateFormat.PKCS8), 0o600)
    certificate = self_signed_certificate(key, common_name, organization, days)
    _write(files.certificate, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def self_signed_certificate(
    key: rsa.RSAPrivateKey, common_name: str, organization: str | None = None, days: int = 365
) -> x509.Certificate:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def load_rsa_certificate(pem: str) -> tuple[x509.Certificate, rsa.RSAPublicKey]:
    """Parse a PEM x509 certificate holding an RSA public key. ``ValueError`` says what is wrong."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.strip().encode())
    except ValueError as exc:
        raise ValueError(
            "is not a PEM x509 certificate (-----BEGIN CERTIFICATE-----, e.g. certificate.crt "
            "from `headwater keys create`)"
        ) from exc
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError(f"holds {_kind(public_key)} key; the JWT bearer flow (RS256) needs an RSA key")
    return certificate, public_key


def certificate_info(certificate: x509.Certificate) -> dict[str, str]:
    """What the API shows about an uploaded certificate (its PEM is returned as well)."""
    return {
        "subject": certificate.subject.rfc4514_string(),
        "notValidAfter": certificate.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "sha256Fingerprint": certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
    }


def _kind(public_key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    kinds = (
        (ec.EllipticCurvePublicKey, "an EC"),
        (ed25519.Ed25519PublicKey, "an Ed25519"),
        (ed448.Ed448PublicKey, "an Ed448"),
    )
    found = next((label for cls, label in kinds if isinstance(public_key, cls)), None)
    if found is None and "DSA" in type(public_key).__name__:
        found = "a DSA"  # by name: touching cryptography's dsa module warns (DSA is deprecated)
    return found or "a non-RSA"


def _private_pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    # Created with its final mode, so a private key is never readable by others, even briefly;
    # chmod as well because --force may reuse a file made with another mode.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)

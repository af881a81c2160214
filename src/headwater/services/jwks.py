"""The JSON Web Key Set of a sandbox's destinations (document 003's "mTLS JWKS endpoint").

    GET /data/foundation/flowservice/jwks[?connectionId=ID]

Headwater presents a client certificate in mutual TLS when a destination's connection has
``auth.params.clientCertificate`` (and its key). The set holds the public key of each such certificate
(the leaf of the PEM chain), one JWK per distinct certificate (RFC 7517, RFC 7518 §6, RFC 8037 for
Ed25519): ``kty`` and its public parameters, ``use: "sig"``, ``kid`` and ``x5t#S256`` (the certificate's
SHA-256 thumbprint, base64url), ``x5c`` (the chain, base64 DER) and ``alg`` where the key type implies one.
A destination's operator can pin or verify exactly what Headwater will present.

Keys Headwater signs its own tokens with are HMAC (HS256) secrets and are never published: no JWT that
Headwater issues is verified by anyone but Headwater. Certificates are not secrets (they are stored and
shown in clear); the private keys never leave the sealed store.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from headwater.catalog import ids
from headwater.stores.metadata import MetadataStore, Scope

_CURVES = {
    "secp256r1": ("P-256", "ES256", 32),
    "secp384r1": ("P-384", "ES384", 48),
    "secp521r1": ("P-521", "ES512", 66),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64url(value.to_bytes(length, "big"))


def key_of(pem: str) -> dict[str, Any] | None:
    """The JWK of the leaf certificate of a PEM chain, or None when it does not parse (a connection saved
    before certificates were checked at save) or its key type has no JWK form."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return None
    leaf = chain[0]
    public = leaf.public_key()
    jwk: dict[str, Any]
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk = {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e), "alg": "RS256"}
    elif isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _CURVES:
        crv, alg, size = _CURVES[public.curve.name]
        point = public.public_numbers()
        jwk = {"kty": "EC", "crv": crv, "x": _uint(point.x, size), "y": _uint(point.y, size), "alg": alg}
    elif isinstance(public, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        crv = "Ed25519" if isinstance(public, ed25519.Ed25519PublicKey) else "Ed448"
        jwk = {"kty": "OKP", "crv": crv, "x": _b64url(raw), "alg": "EdDSA"}
    else:
        return None
    thumbprint = _b64url(hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).digest())
    jwk.update(
        {
            "use": "sig",
            "kid": thumbprint,
            "x5t#S256": thumbprint,
            "x5c": [
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in chain
            ],
        }
    )
    return jwk


def key_set(store: MetadataStore, scope: Scope, connection_id: str | None = None) -> dict[str, Any]:
    """``{"keys": [...]}``: the mTLS certificates of the sandbox's destination connections (of one
    connection when ``connection_id`` is given), each certificate once, in the order of their kids."""
    keys: dict[str, dict[str, Any]] = {}
    if connection_id is None:
        resources = list(store.list("connection", scope).items)
    else:
        one = store.get("connection", scope, connection_id)
        resources = [] if one is None else [one]
    for resource in resources:
        if (resource.doc.get("connectionSpec") or {}).get("id") != ids.HTTP_DESTINATION:
            continue
        params = (resource.doc.get("auth") or {}).get("params") or {}
        pem = params.get("clientCertificate")
        jwk = key_of(pem) if isinstance(pem, str) and pem else None
        if jwk is not None:
            keys.setdefault(jwk["kid"], jwk)
    return {"keys": [keys[kid] for kid in sorted(keys)]}

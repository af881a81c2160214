"""Encryption of secrets at rest, and the keys Headwater generates into its home on first run.

A secret is stored as ``{"$enc": "v1.<base64url nonce+ciphertext>"}``: AES-256-GCM with a random 96-bit
nonce. The associated data binds the ciphertext to where it lives (e.g. the connection id and param
name), so a ciphertext copied to another resource does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from headwater.settings import Settings

MARKER = "$enc"
MASK = "********"


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(settings_value: str | None, path: Path, nbytes: int = 32) -> bytes:
    """Return the key from settings, else from ``path``, creating it (mode 0600) when absent.

    Creation is race-safe: two processes starting at once end up with the same key file.
    """
    if settings_value:
        try:
            raw = _b64d(settings_value)
            if len(raw) == nbytes:
                return raw
        except ValueError:
            pass
        return settings_value.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(_b64e(secrets.token_bytes(nbytes)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    text = path.read_text().strip()
    if not text:  # another process is between create and write; its write is one small syscall
        for _ in range(1000):
            text = path.read_text().strip()
            if text:
                break
    return _b64d(text)


class SecretBox:
    """Encrypts and decrypts secret values. Thread-safe."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            key = _derive(key)
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(load_or_create_key(settings.encryption_key, settings.keys_dir / "encryption.key"))

    def seal(self, plaintext: str, context: str) -> dict[str, str]:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return {MARKER: "v1." + _b64e(nonce + sealed)}

    def open(self, value: Any, context: str) -> str:
        """Decrypt a value made by :meth:`seal`. Raises ``ValueError`` when it is not one or was tampered."""
        if not is_sealed(value):
            raise ValueError("not an encrypted value")
        version, _, payload = value[MARKER].partition(".")
        if version != "v1":
            raise ValueError(f"unknown secret format {version!r}")
        raw = _b64d(payload)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise ValueError(
                "secret does not decrypt with this key (was HEADWATER_ENCRYPTION_KEY changed?)"
            ) from exc


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {MARKER} and isinstance(value[MARKER], str)


def _derive(material: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"headwater-secrets").derive(material)


def mask_sealed(value: Any) -> Any:
    """``value`` as shown: every sealed value in it (at the top or inside objects) as :data:`MASK`."""
    if is_sealed(value):
        return MASK
    if isinstance(value, dict):
        return {k: mask_sealed(v) for k, v in value.items()}
    return value


def open_sealed(box: SecretBox, value: Any, context: str) -> Any:
    """``value`` with every sealed value in it decrypted; one inside an object under key ``k`` was sealed
    with context ``{context}.{k}``."""
    if is_sealed(value):
        return box.open(value, context)
    if isinstance(value, dict):
        return {k: open_sealed(box, v, f"{context}.{k}") for k, v in value.items()}
    return value

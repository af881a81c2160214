"""Access tokens: HS256 JWTs bound to an API client and its organization, with an enforced expiry."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import jwt

from headwater.services.ids import new_hex
from headwater.settings import Settings
from headwater.stores.secrets import load_or_create_key

ISSUER = "headwater-ims"
_LEEWAY = 0


@dataclass(frozen=True)
class TokenClaims:
    client_id: str
    org_id: str
    expires_at: int


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self._key = load_or_create_key(settings.token_signing_key, settings.keys_dir / "token-signing.key")
        self.lifetime = settings.token_lifetime_seconds
        self._verify_cached = functools.lru_cache(maxsize=4096)(self._verify)

    @property
    def signing_key(self) -> bytes | str:
        """The key other signed artefacts derive theirs from (console sessions)."""
        return self._key

    def issue(self, client_id: str, org_id: str, lifetime: int | None = None) -> tuple[str, int]:
        """A signed token for ``client_id``; ``lifetime`` (seconds) defaults to the configured one."""
        lifetime = self.lifetime if lifetime is None else lifetime
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": client_id,
            "client_id": client_id,
            "org": org_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": new_hex(8),
            "type": "access_token",
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), lifetime

    def verify(self, token: str) -> TokenClaims | None:
        """The claims of a valid, unexpired token this server signed; None otherwise."""
        claims = self._verify_cached(token)
        if claims is None or claims.expires_at <= time.time():
            return None
        return claims

    def _verify(self, token: str) -> TokenClaims | None:
        try:
            data = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "org"]},
                leeway=_LEEWAY,
            )
        except jwt.PyJWTError:
            return None
        if data.get("type") != "access_token":
            return None
        return TokenClaims(str(data["sub"]), str(data["org"]), int(data["exp"]))

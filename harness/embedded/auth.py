"""Basic auth for the gateway's /system/* routes, as the OpenFaaS gateway does it.

Credentials are generated per run (user "admin", a random password) and never logged; the
comparison is constant-time so the password cannot be guessed byte by byte from timings.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str

    @classmethod
    def generate(cls, user: str = "admin") -> BasicAuth:
        return cls(user, secrets.token_urlsafe(24))

    def header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def as_tuple(self) -> tuple[str, str]:
        """For httpx: `httpx.get(url, auth=auth.as_tuple())`."""
        return (self.user, self.password)

    def check(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared every time, so a wrong user takes as long as a wrong password.
        user_ok = hmac.compare_digest(user, self.user.encode())
        password_ok = hmac.compare_digest(password, self.password.encode())
        return bool(sep) and user_ok and password_ok

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, password=***)"

    __str__ = __repr__

"""Console access: the admin token, signed expiring session cookies, and CSRF tokens.

A session is an HMAC over an expiry and a nonce, so that every worker checks it on its own; the
signing key derives from the admin token, so changing the token ends every session. Signing out
records the nonce in the store (`Store.revoke_session`), which the console checks on each
request: a copied cookie dies with its session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

from copines.config import PLACEHOLDER_SECRETS, Settings
from copines.errors import ConfigError

SESSION_COOKIE = "copines_admin"
LOGIN_CSRF_COOKIE = "copines_admin_login"
SESSION_SECONDS = 8 * 3600
MIN_TOKEN_CHARS = 16
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def is_local_host(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    host = host.strip().strip("[]").lower()
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_token(settings: Settings) -> str | None:
    """The configured admin token, or None when the console is disabled."""
    if settings.admin_token is None:
        return None
    value = settings.admin_token.get_secret_value()
    return value or None


def token_is_weak(token: str | None) -> bool:
    """Empty, a known placeholder, or too short to resist guessing."""
    if not token:
        return True
    return token.strip().lower() in PLACEHOLDER_SECRETS or len(token) < MIN_TOKEN_CHARS


def check_admin_token(settings: Settings, host: str) -> None:
    """Refuse to serve on a non-local address without a strong COPINES_ADMIN_TOKEN.

    Raises:
        ConfigError: the token is missing, a placeholder or shorter than 16 characters while
            `host` is reachable from other machines.
    """
    if is_local_host(host):
        return
    if token_is_weak(admin_token(settings)):
        raise ConfigError(
            f"serving on {host} needs a strong admin token: set COPINES_ADMIN_TOKEN to a random "
            f"value of at least {MIN_TOKEN_CHARS} characters (for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or serve on 127.0.0.1"
        )


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _key(token: str) -> bytes:
    return hmac.new(token.encode("utf-8"), b"copines-admin-session-v1", hashlib.sha256).digest()


def _sign(key: bytes, *parts: str) -> str:
    mac = hmac.new(key, "|".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Session:
    """A signed-in console session."""

    nonce: str
    expires: int

    def csrf_token(self, token: str) -> str:
        """The CSRF token of this session, bound to it (forms carry it back)."""
        return _sign(_key(token), "csrf", self.nonce, str(self.expires))


def new_session(token: str, now: float | None = None) -> tuple[Session, str]:
    """A fresh session and its cookie value."""
    expires = int((now or time.time()) + SESSION_SECONDS)
    session = Session(secrets.token_urlsafe(16), expires)
    cookie = (
        f"{session.nonce}.{expires}.{_sign(_key(token), 'session', session.nonce, str(expires))}"
    )
    return session, cookie


def read_session(token: str | None, cookie: str | None, now: float | None = None) -> Session | None:
    """The session a cookie proves, or None (no token, tampered, malformed or expired)."""
    if not token or not cookie or len(cookie) > 256:
        return None
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    nonce, expires, signature = parts
    expected = _sign(_key(token), "session", nonce, expires)
    if not hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode("ascii")):
        return None
    if int(expires) < (now or time.time()):
        return None
    return Session(nonce, int(expires))


def csrf_ok(session: Session, token: str, given: str | None) -> bool:
    """True when a form's CSRF token is this session's."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), session.csrf_token(token).encode())

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
import math
import secrets
import time
from dataclasses import dataclass, field

from copines.config import PLACEHOLDER_SECRETS, Settings
from copines.errors import ConfigError

SESSION_COOKIE = "copines_admin"
LOGIN_CSRF_COOKIE = "copines_admin_login"
SESSION_SECONDS = 8 * 3600
MIN_TOKEN_CHARS = 16
MIN_TOKEN_BITS = 60  # estimated entropy; secrets.token_urlsafe(32) gives about 200
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


def token_bits(token: str) -> float:
    """An estimate of a token's entropy in bits, for guessing by pattern: a token repeating
    a shorter one counts once; then each character counts log2 of the alphabet its classes
    span (lower case, upper case, digits, others), except one that repeats the previous
    character (0 bits) or follows it in sequence (1 bit: "abcd", "4321"). A repeated letter
    gives about 5 bits, "0123456789abcdef" about 24, 43 random URL-safe characters about 250.
    """
    if not token:
        return 0.0
    n = len(token)
    for period in range(1, n // 2 + 1):  # "abcabcabc" -> "abc"
        if n % period == 0 and token[:period] * (n // period) == token:
            token = token[:period]
            break
    pool = 0
    pool += 26 if any(c.islower() for c in token) else 0
    pool += 26 if any(c.isupper() for c in token) else 0
    pool += 10 if any(c.isdigit() for c in token) else 0
    pool += 33 if any(not c.isalnum() for c in token) else 0
    per_char = math.log2(max(pool, 2))
    bits = 0.0
    previous = None
    for char in token:
        if previous is not None and char == previous:
            pass
        elif previous is not None and abs(ord(char) - ord(previous)) == 1:
            bits += 1.0
        else:
            bits += per_char
        previous = char
    return bits


def token_is_weak(token: str | None) -> bool:
    """Empty, a known placeholder, too short, or too predictable (low entropy) to resist
    guessing."""
    if not token:
        return True
    return (
        token.strip().lower() in PLACEHOLDER_SECRETS
        or len(token) < MIN_TOKEN_CHARS
        or token_bits(token) < MIN_TOKEN_BITS
    )


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
            f"value of at least {MIN_TOKEN_CHARS} characters and about {MIN_TOKEN_BITS} bits of "
            "entropy (not a repeated or simple pattern; for example the output of "
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


@dataclass
class LoginThrottle:
    """Failed sign-ins per address: after `free` failures, each further attempt must wait
    0.5 s, then 1, 2, 4... (up to `max_delay`) after the previous failure; a success clears
    the address. In the process's memory (each worker counts its own)."""

    free: int = 3
    max_delay: float = 30.0
    failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def wait_for(self, ip: str, now: float | None = None) -> float:
        """Seconds this address must still wait before its next attempt (0: go ahead)."""
        count, last = self.failures.get(ip, (0, 0.0))
        if count < self.free:
            return 0.0
        delay = min(0.5 * 2 ** (count - self.free), self.max_delay)
        return max(0.0, last + delay - (now or time.monotonic()))

    def failed(self, ip: str, now: float | None = None) -> None:
        count, _ = self.failures.get(ip, (0, 0.0))
        self.failures[ip] = (count + 1, now or time.monotonic())
        if len(self.failures) > 10_000:  # forget the oldest addresses
            for key in sorted(self.failures, key=lambda k: self.failures[k][1])[:5_000]:
                del self.failures[key]

    def succeeded(self, ip: str) -> None:
        self.failures.pop(ip, None)

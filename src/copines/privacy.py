"""What the service keeps about visitors, and for how long: keyed hashes of IP addresses, signed
links that reopen a conversation, and the retention purge."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta

from copines.config import Settings
from copines.store.base import Store

log = logging.getLogger("copines.privacy")

# Without a configured secret (nor an admin token to derive one from), a random key for this
# process: hashes and links then hold until it restarts, and only within one worker.
_PROCESS_KEY = secrets.token_bytes(32)


def _key(settings: Settings, purpose: str, own: str | None) -> bytes:
    secret = own
    if secret is None and settings.admin_token is not None:
        secret = settings.admin_token.get_secret_value() or None
    if secret is None:
        return hmac.new(_PROCESS_KEY, purpose.encode(), hashlib.sha256).digest()
    return hmac.new(
        secret.encode("utf-8"), f"copines-{purpose}-v1".encode(), hashlib.sha256
    ).digest()


def ip_key(settings: Settings) -> bytes:
    own = settings.ip_hash_key
    return _key(settings, "ip", own.get_secret_value() if own is not None else None)


def link_key(settings: Settings) -> bytes:
    own = settings.link_secret
    return _key(settings, "link", own.get_secret_value() if own is not None else None)


def hash_ip(settings: Settings, ip: str) -> str:
    """The form in which a visitor's address is kept (rate-limit keys): a keyed hash, so that
    the address cannot be read back or found by hashing every address."""
    return hmac.new(ip_key(settings), ip.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _sign(key: bytes, conversation_id: str, expires: str) -> str:
    mac = hmac.new(key, f"reopen|{conversation_id}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def reopen_token(settings: Settings, conversation_id: str, now: float | None = None) -> str:
    """A signed, expiring credential for one conversation (what a reply's link carries)."""
    expires = str(int((now or time.time()) + settings.reply_link_days * 86400))
    return f"{conversation_id}.{expires}.{_sign(link_key(settings), conversation_id, expires)}"


def reopen_link(settings: Settings, conversation_id: str) -> str:
    """The page of the site with the widget, and the credential in its fragment (a fragment
    is never sent to the site's server, so it stays out of its logs)."""
    base = settings.site_url.split("#", 1)[0]
    return f"{base}#copines={reopen_token(settings, conversation_id)}"


def reopen_token_valid(
    key: bytes, token: str | None, conversation_id: str, now: float | None = None
) -> bool:
    """True when `token` is an unexpired reopen credential for this conversation."""
    if not token or len(token) > 200:
        return False
    parts = token.rsplit(".", 2)
    if len(parts) != 3 or parts[0] != conversation_id or not parts[1].isdigit():
        return False
    expected = _sign(key, conversation_id, parts[1])
    if not hmac.compare_digest(parts[2].encode("ascii", "replace"), expected.encode("ascii")):
        return False
    return int(parts[1]) >= (now or time.time())


def retention_cutoff(settings: Settings, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=settings.retention_days)


async def purge(store: Store, settings: Settings) -> int:
    """Delete the conversations idle for longer than the retention period; returns how many."""
    deleted = await store.purge_conversations(retention_cutoff(settings))
    if deleted:
        log.info(
            "retention: deleted %d conversations older than %d days",
            deleted,
            settings.retention_days,
        )
    return deleted


async def purge_forever(store: Store, settings: Settings) -> None:
    """`copines serve`'s schedule: purge now, then every `purge_interval_hours`."""
    while True:
        try:
            await purge(store, settings)
        except Exception as exc:  # a failed purge is retried at the next interval
            log.error("retention purge failed: %s", exc)
        await asyncio.sleep(max(settings.purge_interval_hours, 0.001) * 3600)

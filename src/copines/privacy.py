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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from copines.config import Settings
from copines.store.base import Store

log = logging.getLogger("copines.privacy")

# The `meta` rows that hold the keys generated on first start, when the settings name none.
LINK_SECRET_META = "secret:link"
IP_KEY_META = "secret:ip"


@dataclass(frozen=True)
class PrivacyKeys:
    """The keys that sign reply links and hash visitors' addresses, resolved once at start-up.

    `link` signs new links; `link_accepted` also holds the previous secret during a rotation.
    """

    link: bytes
    link_accepted: tuple[bytes, ...]
    ip: bytes


def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(
        secret.encode("utf-8"), f"copines-{purpose}-v1".encode(), hashlib.sha256
    ).digest()


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def load_keys(store: Store, settings: Settings) -> PrivacyKeys:
    """The configured secrets, or ones generated on the first start and kept in the store
    (shared by every worker and kept across restarts, independent of the admin token)."""
    link_secret = _secret(settings.link_secret) or await store.meta_setdefault(
        LINK_SECRET_META, secrets.token_urlsafe(32)
    )
    ip_secret = _secret(settings.ip_hash_key) or await store.meta_setdefault(
        IP_KEY_META, secrets.token_urlsafe(32)
    )
    link = _derive(link_secret, "link")
    accepted = [link]
    previous = _secret(settings.link_secret_previous)
    if previous:
        accepted.append(_derive(previous, "link"))
    return PrivacyKeys(link=link, link_accepted=tuple(accepted), ip=_derive(ip_secret, "ip"))


def hash_ip(key: bytes, ip: str) -> str:
    """The form in which a visitor's address is kept (rate-limit keys): a keyed hash, so that
    the address cannot be read back or found by hashing every address."""
    return hmac.new(key, ip.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _sign(key: bytes, conversation_id: str, expires: str) -> str:
    mac = hmac.new(key, f"reopen|{conversation_id}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def reopen_token(key: bytes, conversation_id: str, days: int, now: float | None = None) -> str:
    """A signed credential for one conversation, valid `days` days (what a reply's link carries)."""
    expires = str(int((now or time.time()) + days * 86400))
    return f"{conversation_id}.{expires}.{_sign(key, conversation_id, expires)}"


def reopen_link(settings: Settings, key: bytes, conversation_id: str) -> str:
    """The page of the site with the widget, and the credential in its fragment (a fragment
    is never sent to the site's server, so it stays out of its logs)."""
    base = settings.site_url.split("#", 1)[0]
    token = reopen_token(key, conversation_id, settings.reply_link_days)
    return f"{base}#copines={token}"


def reopen_token_valid(
    keys: Sequence[bytes], token: str | None, conversation_id: str, now: float | None = None
) -> bool:
    """True when `token` is an unexpired reopen credential for this conversation, signed by
    one of `keys`."""
    if not token or len(token) > 200:
        return False
    parts = token.rsplit(".", 2)
    if len(parts) != 3 or parts[0] != conversation_id or not parts[1].isdigit():
        return False
    given = parts[2].encode("ascii", "replace")
    signed = False
    for key in keys:
        expected = _sign(key, conversation_id, parts[1]).encode("ascii")
        signed = hmac.compare_digest(given, expected) or signed
    return signed and int(parts[1]) >= (now or time.time())


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

"""Email through SMTP (COPINES_SMTP_URL): the team's replies to visitors who left an address,
and each new hand-off to the team."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import SplitResult, unquote, urlsplit

import aiosmtplib

from copines.config import Settings
from copines.privacy import reopen_link
from copines.store.base import Escalation, Store

log = logging.getLogger("copines.mail")


def _loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_mode(url: SplitResult) -> tuple[bool, bool | None]:
    """(use_tls, start_tls) for aiosmtplib: implicit TLS for smtps://; STARTTLS required when
    a password would cross the network (so that nobody on the way can strip it and read the
    password); STARTTLS when offered otherwise."""
    if url.scheme == "smtps":
        return True, False
    if url.username and not _loopback(url.hostname):
        return False, True
    return False, None


class Mailer:
    """Sends plain-text emails; `enabled` is False without COPINES_SMTP_URL."""

    def __init__(self, settings: Settings, link_key: bytes):
        self.settings = settings
        self.link_key = link_key
        self._url = settings.smtp_url.get_secret_value() if settings.smtp_url else ""

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    async def send(self, to: str, subject: str, body: str, *, attempts: int = 1) -> bool:
        """True once the SMTP server accepted the message; False (logged, never raised, and
        without the server's password) when it could not be sent. A failure that may pass
        (the server unreachable or busy) is tried again, up to `attempts` times in all."""
        if not self.enabled:
            return False
        for attempt in range(max(1, attempts)):
            if attempt:
                await asyncio.sleep(self.settings.smtp_retry_delay * 2 ** (attempt - 1))
            outcome = await self._send_once(to, subject, body)
            if outcome is not None:
                return outcome
        return False

    async def _send_once(self, to: str, subject: str, body: str) -> bool | None:
        """True: sent; False: it never will be (a refused address); None: worth a retry."""
        url = urlsplit(self._url)
        use_tls, start_tls = tls_mode(url)
        try:
            # Built inside the try: an address the email package or aiosmtplib cannot encode
            # raises ValueError here, and is a failed email, not a failed request.
            message = EmailMessage()
            message["From"] = self.settings.smtp_from
            message["To"] = to
            message["Subject"] = " ".join(subject.split())  # one line, whatever the text held
            message["Message-ID"] = make_msgid(domain="copines")
            message.set_content(body)
            await aiosmtplib.send(
                message,
                hostname=url.hostname or "localhost",
                port=url.port or (465 if use_tls else 587),
                username=unquote(url.username) if url.username else None,
                password=unquote(url.password) if url.password else None,
                use_tls=use_tls,
                start_tls=start_tls,
                timeout=self.settings.smtp_timeout,
            )
        except (ValueError, aiosmtplib.SMTPRecipientsRefused) as exc:
            log.error("email not sent: the address was refused (%s)", type(exc).__name__)
            return False
        except (aiosmtplib.SMTPException, OSError) as exc:
            if start_tls and "STARTTLS" in str(exc):
                log.error(
                    "email not sent: the %s server offers no STARTTLS, and its password is sent "
                    "over TLS only; give COPINES_SMTP_URL a server with STARTTLS, or smtps://",
                    url.hostname,
                )
                return False
            log.error("email to the %s server failed: %s", url.hostname, type(exc).__name__)
            return None
        return True

    async def send_reply(self, to: str, conversation_id: str, author: str, text: str) -> bool:
        """The team's reply to a visitor, with the link that reopens the conversation (tried
        `smtp_attempts` times)."""
        s = self.settings
        link = reopen_link(s, self.link_key, conversation_id)
        body = (
            f"Bonjour,\n\n{author}, de l'équipe de L'Agence des Copines, t'a répondu :\n\n"
            f"{text}\n\n"
            f"Pour lire la conversation et répondre, ouvre ce lien (valable {s.reply_link_days} "
            f"jours, sur n'importe quel appareil) :\n{link}\n\n"
            "Ne transfère pas cet email : le lien donne accès à ta conversation.\n"
            "Tu le reçois parce que tu as laissé ton adresse dans le chat ; tu peux la retirer "
            f"depuis le chat à tout moment. Notre politique de confidentialité : {s.privacy_url}\n"
        )
        subject = "L'Agence des Copines t'a répondu"
        return await self.send(to, subject, body, attempts=s.smtp_attempts)

    async def send_handoff(self, escalation: Escalation) -> bool:
        """Tell the team of a new hand-off (when COPINES_TEAM_EMAIL is set)."""
        s = self.settings
        if not s.team_email:
            return False
        need = escalation.primary_need or escalation.reason
        body = (
            f"Nouvelle demande transmise à l'équipe (escalade #{escalation.id}).\n\n"
            f"{escalation.brief}\n\n"
            f"Répondre depuis la console : {s.console_url.rstrip('/')}/escalations/{escalation.id}\n"
        )
        return await self.send(s.team_email, f"Escalade #{escalation.id} : {need}"[:150], body)


async def deliver_reply(
    store: Store,
    mailer: Mailer,
    message_id: int,
    to: str,
    conversation_id: str,
    author: str,
    text: str,
) -> bool:
    """Send the team's reply (in the background of the console's request) and record how it
    went on the message, for the console: `email` "sent" or "failed"."""
    sent = await mailer.send_reply(to, conversation_id, author, text)
    try:
        await store.update_message_meta(message_id, {"email": "sent" if sent else "failed"})
    except Exception as exc:  # the conversation may have been deleted meanwhile
        log.warning("the email's outcome was not recorded: %s", type(exc).__name__)
    return sent

"""Email through SMTP (COPINES_SMTP_URL): the team's replies to visitors who left an address,
and each new hand-off to the team."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib

from copines.config import Settings
from copines.privacy import reopen_link
from copines.store.base import Escalation

log = logging.getLogger("copines.mail")


class Mailer:
    """Sends plain-text emails; `enabled` is False without COPINES_SMTP_URL."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._url = settings.smtp_url.get_secret_value() if settings.smtp_url else ""

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    async def send(self, to: str, subject: str, body: str) -> bool:
        """True once the SMTP server accepted the message; False (logged, never raised, and
        without the server's password) when it could not be sent."""
        if not self.enabled:
            return False
        url = urlsplit(self._url)
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = to
        message["Subject"] = " ".join(subject.split())  # one line, whatever the text held
        message["Message-ID"] = make_msgid(domain="copines")
        message.set_content(body)
        implicit_tls = url.scheme == "smtps"
        try:
            await aiosmtplib.send(
                message,
                hostname=url.hostname or "localhost",
                port=url.port or (465 if implicit_tls else 587),
                username=unquote(url.username) if url.username else None,
                password=unquote(url.password) if url.password else None,
                use_tls=implicit_tls,
                start_tls=None if not implicit_tls else False,
                timeout=self.settings.smtp_timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error("email to the %s server failed: %s", url.hostname, type(exc).__name__)
            return False
        return True

    async def send_reply(self, to: str, conversation_id: str, author: str, text: str) -> bool:
        """The team's reply to a visitor, with the link that reopens the conversation."""
        s = self.settings
        body = (
            f"Bonjour,\n\n{author}, de l'équipe de L'Agence des Copines, t'a répondu :\n\n"
            f"{text}\n\n"
            f"Pour lire la conversation et répondre, ouvre ce lien (valable {s.reply_link_days} "
            f"jours, sur n'importe quel appareil) :\n{reopen_link(s, conversation_id)}\n\n"
            "Ne transfère pas cet email : le lien donne accès à ta conversation.\n"
            "Tu le reçois parce que tu as laissé ton adresse dans le chat ; tu peux la retirer "
            f"depuis le chat à tout moment. Notre politique de confidentialité : {s.privacy_url}\n"
        )
        return await self.send(to, "L'Agence des Copines t'a répondu", body)

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

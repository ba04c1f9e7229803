"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the mail tests."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Inbox:
    """What the server accepted: one parsed EmailMessage per DATA, with its envelope."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for _, rcpt, m in self.messages if address in rcpt]

    def wait_for(self, address: str, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """The messages for `address` once there are `count` of them (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no email for {address} after {timeout}s: {self.messages}")


class SMTPServer:
    """aiosmtpd in its own thread (on 127.0.0.1 unless told); `url` is what COPINES_SMTP_URL
    takes. It offers no STARTTLS; with `plain_auth`, it takes AUTH without TLS and keeps the
    passwords it was sent in `passwords` (what a man in the middle would read)."""

    def __init__(self, host: str = "127.0.0.1", plain_auth: bool = False) -> None:
        self.inbox = Inbox()
        self.host = host
        self.port = _free_port(host)
        self.passwords: list[bytes] = []
        options: dict = {}
        if plain_auth:
            options = {"auth_require_tls": False, "authenticator": self._authenticate}
        self.controller = Controller(self.inbox, hostname=host, port=self.port, **options)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.passwords.append(bytes(auth_data.password))
        return AuthResult(success=True)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

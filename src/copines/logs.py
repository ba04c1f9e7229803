"""Logging for `copines serve` and `copines ask`: JSON lines on stdout, at a set level.

Every record becomes one JSON object (`ts`, `level`, `logger`, `message`, plus the fields a
record carries in `extra={"fields": {...}}`, such as the turn's line). The configured secrets
(every secret setting: API keys, tokens, the admin token, the SMTP URL, the keys that hash IPs
and sign links; and the passwords inside any URL setting, such as the database's) are replaced
by `[redacted]` in every line, whatever logged them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from copines.config import Settings, get_settings

REDACTED = "[redacted]"


def secrets_of(settings: Settings) -> list[str]:
    """The secret values a line must never show (at least 6 characters: shorter ones would
    blank ordinary words): every `SecretStr` setting, and the password of every URL setting
    (as written and decoded)."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
            values.extend(_url_passwords(value.get_secret_value()))
        elif isinstance(value, str):
            values.extend(_url_passwords(value))
    return [value for value in dict.fromkeys(values) if len(value) >= 6]


def _url_passwords(text: str) -> list[str]:
    """The password in `scheme://user:password@host...`, as written and percent-decoded."""
    if "://" not in text or "@" not in text:
        return []
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


class JsonLines(logging.Formatter):
    """One JSON object per record, secrets blanked."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)  # a structured record (the turn's line): its fields, not a copy
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def setup_logging(
    level: str | int | None = None, settings: Settings | None = None, stream: Any = None
) -> Callable[[], None]:
    """Send every logger's records (uvicorn's included) to `stream` (stdout by default) as
    JSON lines at `level` (default: the `log_level` setting). Returns the undo (a command run
    inside another program, a test, puts its handlers back)."""
    settings = settings or get_settings()
    level = level or settings.log_level
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonLines(secrets_of(settings)))
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "aiohttp.access")
    saved = (
        list(root.handlers),
        root.level,
        {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level) for n in names},
        {n: logging.getLogger(n).propagate for n in names},
    )
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in names[:3]:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level)
    # Client libraries log each request at INFO, URLs included: only their warnings.
    for name in names[3:]:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))

    def undo() -> None:
        handlers, root_level, loggers, propagate = saved
        root.removeHandler(handler)
        for old in handlers:
            root.addHandler(old)
        root.setLevel(root_level)
        for name, (old_handlers, old_level) in loggers.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = old_handlers
            logger.setLevel(old_level)
            logger.propagate = propagate[name]

    return undo

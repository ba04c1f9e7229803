"""The JSON-lines formatter: one object per record, structured fields merged, secrets blanked."""

from __future__ import annotations

import json
import logging

from copines.logs import REDACTED, JsonLines, secrets_of
from tests.conftest import make_settings

KEY = "sk-or-v1-THISISAFAKEKEY0123456789"


def record(message: str, *args, **extra) -> logging.LogRecord:
    made = logging.LogRecord("copines.test", logging.WARNING, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_key_logged_by_mistake_is_blanked(tmp_path):
    settings = make_settings(tmp_path, openrouter_api_key=KEY, admin_token="Zq8-kP2_vX9mLr4TbN7")
    formatter = JsonLines(secrets_of(settings))
    line = formatter.format(record("calling with Authorization: Bearer %s", KEY))
    assert KEY not in line and REDACTED in line
    parsed = json.loads(line)
    assert parsed["level"] == "warning" and parsed["logger"] == "copines.test"
    fields = formatter.format(record("turn", fields={"event": "turn", "header": KEY}))
    assert KEY not in fields and json.loads(fields)["event"] == "turn"
    assert "Zq8-kP2_vX9mLr4TbN7" not in formatter.format(record("token Zq8-kP2_vX9mLr4TbN7"))


def test_every_secret_setting_is_blanked(tmp_path):
    """The SMTP URL (and its password alone), the IP-hash and link keys, the Notion token and
    the passwords inside the database and Redis URLs never reach a line."""
    smtp_password = "m0t-de-p@sse-SMTP"
    secrets = {
        "smtp_url": f"smtps://equipe:{smtp_password.replace('@', '%40')}@mail.example.org:465",
        "ip_hash_key": "ipkey-7Hq2mXr9Lw4Zt8Vb3Nc6Pd1Fs5Gk0Jy",
        "link_secret": "link-3Wd8Qz1Rt6Yp9Ku2Ma5Lx7Nv4Bc0Hs",
        "link_secret_previous": "oldlink-9Gf2Hj5Kl8Mn1Qw4Er7Ty0Ui3Op",
        "notion_token": "secret_NotionFAKE0123456789abcdef",
        "redis_url": "redis://:redis-pass-4242@127.0.0.1:6379/0",
    }
    settings = make_settings(tmp_path, **secrets)
    formatter = JsonLines(secrets_of(settings))
    shown = [*secrets.values(), smtp_password, "redis-pass-4242"]
    line = formatter.format(record("settings: %s", " | ".join(shown)))
    for value in shown:
        assert value not in line, value
    assert line.count(REDACTED) >= len(secrets)
    assert "mail.example.org" not in line
    database = make_settings(tmp_path, database_url="postgresql://copines:pg-Secret-77@db/copines")
    line = JsonLines(secrets_of(database)).format(record("cannot reach %s", "pg-Secret-77"))
    assert "pg-Secret-77" not in line and REDACTED in line

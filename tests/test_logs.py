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

"""Retention: `copines purge`, and the purge `copines serve` runs on its own; the keyed hash of
IP addresses and the signed links, alone."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from copines.cli import main
from copines.config import get_settings
from copines.conversations import start_conversation
from copines.privacy import hash_ip, reopen_token, reopen_token_valid
from copines.store import create_store
from copines.store.base import Message
from tests.api.live import live_server
from tests.conftest import make_settings


async def _two_conversations(settings, old_days: int) -> tuple[str, str]:
    """One conversation last active `old_days` ago, one active now."""
    async with create_store(settings) as store:
        old, _ = await start_conversation(store)
        await store.add_message(Message(old.id, "user", "Bonjour"))
        recent, _ = await start_conversation(store)
        await store.add_message(Message(recent.id, "user", "Coucou"))
    when = (datetime.now(UTC) - timedelta(days=old_days)).isoformat(timespec="microseconds")
    path = settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (when, old.id))
    return old.id, recent.id


async def _exists(settings, conversation_id: str) -> bool:
    async with create_store(settings) as store:
        return await store.get_conversation(conversation_id) is not None


def test_copines_purge_deletes_what_the_retention_no_longer_allows(tmp_path: Path, monkeypatch):
    db = tmp_path / "purge.db"
    settings = make_settings(tmp_path, database_url=f"sqlite:///{db}")
    old, recent = asyncio.run(_two_conversations(settings, old_days=400))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        kept = runner.invoke(main, ["purge", "--days", "500"], catch_exceptions=False)
        assert kept.output.strip() == "0 conversations older than 500 days deleted"
        result = runner.invoke(main, ["purge"], catch_exceptions=False)  # 365 days by default
        assert result.exit_code == 0
        assert result.output.strip() == "1 conversation older than 365 days deleted"
    finally:
        get_settings.cache_clear()
    assert not asyncio.run(_exists(settings, old))
    assert asyncio.run(_exists(settings, recent))


def test_serve_purges_on_its_own(tmp_path: Path, embedder):
    settings = make_settings(
        tmp_path, database_url=f"sqlite:///{tmp_path / 'serve.db'}", retention_days=30
    )
    old, recent = asyncio.run(_two_conversations(settings, old_days=31))
    with live_server(settings, embedder=embedder):
        deadline = time.monotonic() + 10
        while asyncio.run(_exists(settings, old)) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not asyncio.run(_exists(settings, old))
    assert asyncio.run(_exists(settings, recent))


def test_ip_hashes_are_keyed_and_links_are_bound_to_one_conversation():
    one, two = b"1" * 32, b"2" * 32
    hashed = hash_ip(one, "203.0.113.7")
    assert "203.0.113.7" not in hashed and hashed == hash_ip(one, "203.0.113.7")
    assert hashed != hash_ip(two, "203.0.113.7")
    assert hashed != hash_ip(one, "203.0.113.8")

    token = reopen_token(one, "conv-1", days=30)
    assert reopen_token_valid([one], token, "conv-1")
    assert not reopen_token_valid([one], token, "conv-2")
    assert not reopen_token_valid([two], token, "conv-1")  # another service's key
    assert reopen_token_valid([two, one], token, "conv-1")  # one of the accepted keys
    expired = reopen_token(one, "conv-1", days=30, now=time.time() - 31 * 86400)
    assert not reopen_token_valid([one], expired, "conv-1")
    assert not reopen_token_valid([one], None, "conv-1")
    assert not reopen_token_valid([], token, "conv-1")


@pytest.mark.parametrize("name", ["link_secret", "ip_hash_key", "link_secret_previous"])
def test_an_empty_secret_means_unset_and_a_short_one_is_refused_by_name(tmp_path: Path, name: str):
    assert getattr(make_settings(tmp_path, **{name: SecretStr("")}), name) is None
    assert getattr(make_settings(tmp_path, **{name: "  "}), name) is None
    with pytest.raises(ValidationError, match=f"COPINES_{name.upper()} is shorter than 16"):
        make_settings(tmp_path, **{name: "short-secret"})
    kept = make_settings(tmp_path, **{name: "s" * 16})
    assert getattr(kept, name).get_secret_value() == "s" * 16

"""What the service says about its parts when it starts: each offline default names its fix."""

from __future__ import annotations

from pathlib import Path

from copines.deps import describe_parts
from tests.conftest import make_settings


def test_offline_defaults_say_which_variable_to_set(tmp_path: Path) -> None:
    lines = "\n".join(describe_parts(make_settings(tmp_path)))
    for variable in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "COHERE_API_KEY", "REDIS_URL"):
        assert variable in lines
    assert "answering offline" in lines and "store: sqlite" in lines


def test_configured_parts_are_named_without_their_keys(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        openrouter_api_key="sk-or-secret-value",
        openai_api_key="sk-secret-value",
        cohere_api_key="co-secret-value",
        redis_url="redis://127.0.0.1:6379/0",
        database_url="postgresql://copines:pw@127.0.0.1:5432/copines",
    )
    lines = "\n".join(describe_parts(settings))
    assert "offline" not in lines and "store: postgres" in lines
    assert "text-embedding-3-small" in lines and "rerank-multilingual-v3.0" in lines
    assert "secret" not in lines and "pw@" not in lines


def test_email_on_with_links_to_this_machine_is_warned_of_by_name(tmp_path):
    from copines.deps import email_link_warnings
    from tests.conftest import make_settings

    default = make_settings(tmp_path, smtp_url="smtp://127.0.0.1:2525")
    warned = email_link_warnings(default)
    assert len(warned) == 2
    assert "COPINES_SITE_URL" in warned[0] and "COPINES_CONSOLE_URL" in warned[1]
    public = make_settings(
        tmp_path,
        smtp_url="smtp://127.0.0.1:2525",
        site_url="https://lagencedescopines.com/contact",
        console_url="https://chat.lagencedescopines.com/admin",
    )
    assert email_link_warnings(public) == []
    assert email_link_warnings(make_settings(tmp_path)) == []  # no email, no links


async def test_the_warning_is_logged_at_start_up(tmp_path, embedder, caplog):
    from copines.deps import Deps
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, smtp_url="smtp://127.0.0.1:2525")
    with caplog.at_level("WARNING", logger="copines.parts"):
        deps = await Deps.create(settings, embedder=embedder)
        await deps.aclose()
    assert "COPINES_SITE_URL is http://localhost:8000/" in caplog.text

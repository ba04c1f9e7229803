"""`copines ingest URL`, `copines sync` and `copines sources` through click, on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import copines.deps as deps_module
from copines.cli import main
from copines.config import get_settings
from copines.providers.embeddings import LocalEmbedder
from tests.fakes.site import FakeSite
from tests.knowledge.sources.test_web_sync import HOOKS, TUNNEL


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: LocalEmbedder):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(deps_module, "build_embedder", lambda settings: embedder)
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'kb.db'}",
        "COPINES_DATA_DIR": str(tmp_path),
        "COPINES_FETCH_ALLOW_NETWORKS": "127.0.0.1/32",
        "COPINES_FETCH_DELAY": "0",
    }

    def invoke(*args: str, extra: dict[str, str] | None = None):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(main, list(args), env={**env, **(extra or {})})
        finally:
            get_settings.cache_clear()

    return invoke


def test_ingest_a_url_then_sync_it(cli):
    with FakeSite() as site:
        site.pages["/blog/instagram-hooks"] = HOOKS
        site.pages["/blog/tunnel-de-vente"] = TUNNEL
        site.sitemap = ["/blog/instagram-hooks", "/blog/tunnel-de-vente"]
        page = f"{site.url}/blog/instagram-hooks"

        result = cli("ingest", page, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["totals"]["added"] == 1
        assert report["sources"][0]["added_documents"] == [
            f"127.0.0.1:{site.port}/blog/instagram-hooks"
        ]

        result = cli("ingest", f"{site.url}/sitemap.xml", "--owner", "shared")
        assert result.exit_code == 0, result.output
        assert "1 added, 1 updated" in result.stdout  # the page already known: now shared

        docs = json.loads(cli("documents", "--json").stdout)
        assert len(docs) == 2 and {d["owner"] for d in docs} == {"shared"}

        site.pages["/blog/tunnel-de-vente"] = TUNNEL.replace("Cinq emails", "Six emails")
        result = cli("sync", "--json")
        assert result.exit_code == 0, result.output
        totals = json.loads(result.stdout.strip().splitlines()[-1])["totals"]
        assert (totals["updated"], totals["added"], totals["errors"]) == (1, 0, 0)

        rows = json.loads(cli("sources", "--json").stdout)
        assert {r["kind"] for r in rows} == {"page", "sitemap"}
        assert all(r["last_status"] == "ok" and r["last_sync_at"] for r in rows)

        site.sitemap_status = 500
        result = cli("sync", f"{site.url}/sitemap.xml")
        assert result.exit_code == 1
        assert "sitemap unreadable: HTTP 500" in result.output
        assert cli("sync", "nope").exit_code == 2

        # Removing a source deletes the documents no other source keeps.
        result = cli("sources", "remove", page)
        assert result.exit_code == 0 and "with 0 documents" in result.output
        assert len(json.loads(cli("documents", "--json").stdout)) == 2
        result = cli("sources", "remove", f"{site.url}/sitemap.xml")
        assert result.exit_code == 0 and "with 2 documents" in result.output
        assert json.loads(cli("documents", "--json").stdout) == []
        assert json.loads(cli("sources", "--json").stdout) == []
        assert cli("sources", "remove", "nope").exit_code == 2


def test_a_source_taken_out_of_the_file_is_no_longer_synced(cli, tmp_path: Path):
    with FakeSite() as site:
        site.pages["/blog/instagram-hooks"] = HOOKS
        sources = tmp_path / "sources.yaml"
        sources.write_text(
            f"sources:\n  - name: hooks\n    page: {site.url}/blog/instagram-hooks\n"
        )
        assert cli("sync").exit_code == 0
        sources.write_text("sources: []\n")
        before = len(site.requests)
        result = cli("sync")
        assert result.exit_code == 0
        assert "[hooks] no longer in sources.yaml: not synced" in result.output
        assert len(site.requests) == before
        assert len(json.loads(cli("documents", "--json").stdout)) == 1  # kept until removed


def test_ingest_refuses_a_local_address_without_the_setting(cli):
    result = cli("ingest", "http://169.254.169.254/latest/meta-data/")
    assert result.exit_code == 1
    assert "169.254.169.254 is a link-local address" in result.output


def test_ingest_refuses_an_address_with_a_password(cli):
    result = cli("ingest", "https://me:hunter2@agence.test/blog/")
    assert result.exit_code == 2
    assert "https://agence.test/blog/ carries a user name or password" in result.output
    assert "hunter2" not in result.output
    assert json.loads(cli("sources", "--json").stdout) == []  # nothing registered


def test_sync_waits_its_turn(cli, tmp_path: Path):
    import asyncio

    from copines.store.sqlite import SQLiteStore

    assert cli("sources").exit_code == 0  # creates the database

    async def hold() -> None:
        async with SQLiteStore(tmp_path / "kb.db") as store:
            assert await store.claim_lease("sync", "serve-worker", 60)

    asyncio.run(hold())
    result = cli("sync")
    assert result.exit_code == 2 and "another process is syncing" in result.output
    with FakeSite() as site:  # ingesting a URL and removing a source wait their turn too
        site.pages["/blog/instagram-hooks"] = HOOKS
        result = cli("ingest", f"{site.url}/blog/instagram-hooks")
        assert result.exit_code == 2 and "another process is syncing" in result.output
        assert site.requests == []
    result = cli("sources", "remove", "anything")
    assert result.exit_code == 2 and "another process is syncing" in result.output


def test_a_bad_allowed_network_is_refused_when_settings_are_read(cli, tmp_path: Path):
    from pydantic import ValidationError

    from tests.conftest import make_settings

    with pytest.raises(ValidationError, match="COPINES_FETCH_ALLOW_NETWORKS: 'intranet'"):
        make_settings(tmp_path, fetch_allow_networks="127.0.0.1/32, intranet")
    assert make_settings(tmp_path, fetch_allow_networks="10.0.0.0/8").fetch_allow_networks == [
        "10.0.0.0/8"
    ]


def test_remote_text_is_printed_as_it_is_not_as_markup(cli):
    with FakeSite() as site:
        # An address (the source's name) and an error line carrying Rich's closing tag.
        url = f"{site.url}/missing[/]x[bold]"
        result = cli("ingest", url)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code == 1, result.output
        assert f"{url} (page) partial" in result.output
        assert "HTTP 404 not found" in result.output and "[/]x[bold]" in result.output
        listed = cli("sources")
        assert listed.exit_code == 0 and f"{url} page {url}" in listed.output
        result = cli("sync", "nope[/]")
        assert result.exit_code == 2 and "no source named nope[/]" in result.output

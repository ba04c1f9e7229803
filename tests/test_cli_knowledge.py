"""The knowledge commands, through click, with the JSON shapes of the contract."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import copines.deps as deps_module
from copines.cli import main
from copines.config import get_settings
from copines.providers.embeddings import LocalEmbedder
from tests.conftest import EXAMPLES
from tests.fakes.openai_embeddings import FakeOpenAIEmbeddings
from tests.knowledge import files

Invoke = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: LocalEmbedder) -> Invoke:
    """Run `copines ...` in-process on a SQLite file of this test.

    The commands build their parts as in production, except that the local model, when
    configured, is the one already loaded for the session (it takes a second to load).
    """
    monkeypatch.chdir(tmp_path)  # no developer .env file
    real_build = deps_module.build_embedder
    monkeypatch.setattr(
        deps_module,
        "build_embedder",
        lambda settings: real_build(settings) if settings.use_openai_embeddings else embedder,
    )
    base_env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'kb.db'}"}

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(
                main, list(args), env={**base_env, **(env or {})}, input=input
            )
        finally:
            get_settings.cache_clear()

    return invoke


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    shutil.copytree(EXAMPLES, folder)
    return folder


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_ingest_documents_and_search_shapes(cli: Invoke, kb: Path):
    first = ok(cli("ingest", str(kb)))
    assert "24 added" in first.stdout
    again = ok(cli("ingest", str(kb), "--json"))
    rows = json.loads(again.stdout)
    assert len(rows) == 24 and {r["status"] for r in rows} == {"unchanged"}
    assert set(rows[0]) >= {"filename", "status", "owner", "reason", "chunks", "detail"}

    docs = json.loads(ok(cli("documents", "--json")).stdout)
    assert isinstance(docs, list) and len(docs) == 24
    for d in docs:
        assert {"filename", "owner", "chunks"} <= set(d)
        assert isinstance(d["filename"], str) and isinstance(d["chunks"], int) and d["chunks"] > 0
    owners = {d["filename"]: d["owner"] for d in docs}
    assert owners["audrey-kajabi-demarrage.md"] == "audrey"
    assert owners["carole-reels-hooks.md"] == "carole"
    assert owners["agence-faq.md"] == "shared"

    passages = json.loads(
        ok(
            cli(
                "search",
                "comment créer une séquence email de bienvenue",
                "--expert",
                "audrey",
                "--json",
            )
        ).stdout
    )
    assert isinstance(passages, list) and len(passages) == 3
    for p in passages:
        assert {"filename", "owner", "score", "text"} <= set(p)
        assert p["owner"] in ("audrey", "shared") and isinstance(p["score"], float)
    assert passages[0]["filename"] == "audrey-email-sequence-bienvenue.md"
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    five = json.loads(
        ok(cli("search", "hooks reels", "--expert", "carole", "-k", "5", "--json")).stdout
    )
    assert len(five) == 5 and all(p["owner"] in ("carole", "shared") for p in five)

    human = ok(cli("search", "hooks reels", "--expert", "carole"))
    assert "carole-reels-hooks.md" in human.stdout


def test_search_jsonl_batch(cli: Invoke, sample_knowledge_sqlite: Path, tmp_path: Path):
    shutil.copy(sample_knowledge_sqlite, tmp_path / "kb.db")
    batch = tmp_path / "queries.jsonl"
    batch.write_text(
        "\n".join(
            [
                json.dumps({"id": "q1", "query": "pixel meta et utm", "expert": "audrey"}),
                json.dumps(
                    {
                        "id": 2,
                        "query": "comment structurer un carrousel instagram",
                        "expert": "carole",
                    }
                ),
                "",
                "{not json",
                json.dumps({"id": "q4", "query": "bonjour", "expert": "bob"}),
                json.dumps({"id": "q5", "expert": "audrey"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = ok(cli("search", "--jsonl", str(batch), "-k", "2"))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5
    assert [line["id"] for line in lines[:2]] == ["q1", 2]
    for line in lines[:2]:
        assert set(line) == {"id", "results"} and len(line["results"]) == 2
        assert {"filename", "owner", "score", "text"} <= set(line["results"][0])
    assert lines[0]["results"][0]["filename"] == "audrey-funnel-tracking-pixels-utm.md"
    assert lines[1]["results"][0]["filename"] == "carole-instagram-carrousels.md"
    assert lines[2]["results"] == [] and "line 4: not JSON" in lines[2]["error"]
    assert lines[3]["id"] == "q4" and "no expert 'bob'" in lines[3]["error"]
    assert lines[4]["id"] == "q5" and "'query' is required" in lines[4]["error"]
    # Reading stdin works too.
    piped = ok(cli("search", "--jsonl", "-", input=batch.read_text().splitlines()[0] + "\n"))
    assert json.loads(piped.stdout)["id"] == "q1"


def test_set_owner_and_delete(cli: Invoke, tmp_path: Path):
    path = files.write_md(tmp_path, "notes-funnel.md")
    ok(cli("ingest", str(path)))
    query = ("lead magnet page de capture", "--json")
    assert json.loads(ok(cli("search", query[0], "--expert", "carole", "--json")).stdout) == []
    moved = ok(cli("documents", "set-owner", "notes-funnel.md", "carole"))
    assert "carole" in moved.stdout
    docs = json.loads(ok(cli("documents", "--json")).stdout)
    assert docs[0]["owner"] == "carole"
    found = json.loads(ok(cli("search", query[0], "--expert", "carole", "--json")).stdout)
    assert found and found[0]["filename"] == "notes-funnel.md"
    assert json.loads(ok(cli("search", query[0], "--expert", "audrey", "--json")).stdout) == []

    bad_owner = cli("documents", "set-owner", "notes-funnel.md", "bob")
    assert bad_owner.exit_code == 2 and "unknown owner 'bob'" in bad_owner.stderr
    missing = cli("documents", "delete", "absent.md")
    assert missing.exit_code == 2 and "no document named 'absent.md'" in missing.stderr

    ok(cli("documents", "delete", "notes-funnel.md"))
    assert json.loads(ok(cli("documents", "--json")).stdout) == []


def test_ingest_reports_bad_files_and_exit_codes(cli: Invoke, tmp_path: Path):
    folder = tmp_path / "kb"
    folder.mkdir()
    files.write_md(folder, "bon-funnel.md")
    (folder / "casse.pdf").write_bytes(b"%PDF-1.4 garbage")
    (folder / "tableur.xlsx").write_bytes(b"PK")
    result = ok(cli("ingest", str(folder), "--json"))
    rows = {r["filename"]: r for r in json.loads(result.stdout)}
    assert rows["bon-funnel.md"]["status"] == "added"
    assert rows["casse.pdf"]["status"] == "skipped" and "PDF" in rows["casse.pdf"]["detail"]
    assert rows["tableur.xlsx"]["status"] == "skipped"
    table = ok(cli("ingest", str(folder)))
    assert "skipped" in table.stdout and "unsupported file type" in table.stdout
    only_bad = cli("ingest", str(folder / "casse.pdf"))
    assert only_bad.exit_code == 1  # nothing could be ingested
    wrong_owner = cli("ingest", str(folder), "--owner", "bob")
    assert wrong_owner.exit_code == 2 and "unknown owner 'bob'" in wrong_owner.stderr
    usage = cli("search", "sans expert")
    assert usage.exit_code == 2 and "--expert" in usage.stderr


def test_too_close_to_call_is_said_in_the_summary(cli: Invoke, tmp_path: Path):
    path = tmp_path / "recette.md"
    path.write_text(
        "# Recette\n\nPréchauffe le four à 180 degrés. Mélange la farine, le sucre et les "
        "oeufs, puis ajoute les pommes coupées en dés.\n",
        encoding="utf-8",
    )
    result = ok(cli("ingest", str(path)))
    assert "1 too close to call, tagged shared" in result.stdout


def test_embedder_switch_is_refused_until_reindex(cli: Invoke, tmp_path: Path):
    path = files.write_md(tmp_path, "guide-funnel.md")
    ok(cli("ingest", str(path)))
    with FakeOpenAIEmbeddings(api_key="test-openai-key") as server:
        openai = {
            "COPINES_EMBEDDER": "openai",
            "OPENAI_API_KEY": "test-openai-key",
            "COPINES_EMBEDDINGS_BASE_URL": server.url + "/v1",
            "COPINES_EMBEDDINGS_DIMENSIONS": "64",
        }
        query = ("search", "lead magnet page de capture", "--expert", "audrey", "--json")
        refused = cli(*query, env=openai)
        assert refused.exit_code == 2
        assert "copines reindex" in refused.stderr
        assert "local:use-multilingual-v3:512" in refused.stderr
        other = files.write_md(tmp_path, "autre-funnel.md")
        refused_ingest = cli("ingest", str(other), env=openai)
        assert refused_ingest.exit_code == 2 and "copines reindex" in refused_ingest.stderr

        done = ok(cli("reindex", env=openai))
        assert "reindexed 4 passages" in done.stdout
        assert sum(server.batches) >= 4

        found = json.loads(ok(cli(*query, env=openai)).stdout)
        assert found and found[0]["filename"] == "guide-funnel.md"
        ok(cli("ingest", str(other), env=openai))
        docs = json.loads(ok(cli("documents", "--json")).stdout)
        assert [d["filename"] for d in docs] == ["autre-funnel.md", "guide-funnel.md"]

        # And back: the local embedder is now the stranger.
        back = cli(*query)
        assert back.exit_code == 2 and "openai:text-embedding-3-small:64" in back.stderr
        ok(cli("reindex"))
        assert json.loads(ok(cli(*query)).stdout)[0]["filename"] in {
            "guide-funnel.md",
            "autre-funnel.md",
        }

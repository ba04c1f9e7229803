"""Ingestion end to end on every backend: formats, idempotence, atomic replace, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from copines.deps import Deps
from copines.errors import ProviderError
from copines.knowledge.ingest import Ingester
from copines.providers.embeddings import Embedder
from copines.store.base import ChunkRecord, DocumentRecord
from tests.knowledge import files

CAPTURE_QUERY = "lead magnet gratuit en échange de l'adresse email page de capture"


async def texts_of(deps: Deps, filename: str) -> list[str]:
    """Every chunk text of one document, as the store returns them."""
    doc = await deps.store.get_document(filename)
    assert doc is not None
    chunks = [c for c in await deps.store.all_chunks() if c.title == doc.title]
    return [c.text for c in chunks]


async def found(deps: Deps, expert: str, query: str, k: int = 3) -> list[str]:
    result = await deps.retriever.search(expert, query, k=k)
    return [p.filename for p in result.passages]


@pytest.mark.parametrize("fmt", sorted(files.WRITERS))
async def test_each_format_is_ingested_and_searchable(deps: Deps, tmp_path: Path, fmt: str):
    path = files.WRITERS[fmt](tmp_path)
    [result] = await deps.ingester().ingest_paths([path], owner="audrey")
    assert (result.status, result.owner, result.filename) == ("added", "audrey", path.name)
    assert result.chunks >= 1
    doc = await deps.store.get_document(path.name)
    assert doc.chunks == result.chunks and doc.category == fmt
    assert doc.content_hash and doc.source_path == str(path)
    passages = (await deps.retriever.search("audrey", CAPTURE_QUERY)).passages
    assert passages and passages[0].filename == path.name
    assert "lead magnet" in passages[0].text
    if fmt != "txt":  # plain text has no headings
        assert passages[0].heading_path == "Guide du tunnel de vente > La page de capture"
        assert doc.title == "Guide du tunnel de vente"


async def test_second_ingest_of_the_same_file_changes_nothing(deps: Deps, tmp_path: Path):
    path = files.write_md(tmp_path)
    ingester = deps.ingester()
    [first] = await ingester.ingest_paths([path], owner="audrey")
    before = await deps.store.get_document(path.name)
    total = await deps.store.count_chunks()
    [second] = await ingester.ingest_paths([path], owner="auto")
    after = await deps.store.get_document(path.name)
    assert first.status == "added" and second.status == "unchanged"
    assert second.chunks == first.chunks and second.owner == "audrey"
    assert await deps.store.count_chunks() == total
    assert after.updated_at == before.updated_at and after.id == before.id
    assert after.owner == "audrey"  # `auto` on an unchanged file keeps the owner given before


async def test_unchanged_file_with_another_explicit_owner_moves(deps: Deps, tmp_path: Path):
    path = files.write_md(tmp_path)
    await deps.ingester().ingest_paths([path], owner="audrey")
    [result] = await deps.ingester().ingest_paths([path], owner="carole")
    assert result.status == "owner changed" and result.owner == "carole"
    assert (await deps.store.get_document(path.name)).owner == "carole"
    assert await found(deps, "audrey", CAPTURE_QUERY) == []
    assert path.name in await found(deps, "carole", CAPTURE_QUERY)


async def test_replace_flag_reprocesses_an_unchanged_file(deps: Deps, tmp_path: Path):
    path = files.write_md(tmp_path)
    await deps.ingester().ingest_paths([path], owner="audrey")
    before = await deps.store.get_document(path.name)
    total = await deps.store.count_chunks()
    [result] = await deps.ingester().ingest_paths([path], owner="audrey", replace=True)
    after = await deps.store.get_document(path.name)
    assert result.status == "updated"
    assert after.updated_at > before.updated_at and after.created_at == before.created_at
    assert await deps.store.count_chunks() == total == after.chunks


async def test_a_changed_file_replaces_its_chunks(deps: Deps, tmp_path: Path):
    path = files.write_md(tmp_path)
    await deps.ingester().ingest_paths([path], owner="audrey")
    before = await deps.store.get_document(path.name)
    path.write_text(
        "# Guide du tunnel de vente\n\n## Le tripwire\n\n"
        + "Un tripwire est une petite offre à 27 euros proposée juste après l'inscription. " * 5,
        encoding="utf-8",
    )
    [result] = await deps.ingester().ingest_paths([path])
    after = await deps.store.get_document(path.name)
    assert result.status == "updated" and after.id == before.id
    assert after.content_hash != before.content_hash and after.chunks == 1
    assert await deps.store.count_chunks() == 1
    texts = await texts_of(deps, path.name)
    assert len(texts) == 1 and "tripwire" in texts[0] and "lead magnet" not in texts[0]
    assert await found(deps, "audrey", "petite offre tripwire à 27 euros") == [path.name]


async def _snapshot(deps: Deps, filename: str) -> tuple:
    doc = await deps.store.get_document(filename)
    return doc.content_hash, doc.updated_at, doc.chunks, sorted(await texts_of(deps, filename))


async def test_a_failure_mid_write_keeps_every_old_chunk(deps: Deps, tmp_path: Path):
    path = files.write_md(tmp_path)
    await deps.ingester().ingest_paths([path], owner="audrey")
    before = await _snapshot(deps, path.name)
    doc = await deps.store.get_document(path.name)
    replacement = DocumentRecord(
        filename=path.name, title=doc.title, owner="audrey", content_hash="new-hash"
    )
    good = ChunkRecord(position=0, text="Nouveau texte qui remplace tout.", heading_path="X")
    broken = ChunkRecord(position=1, text=None, heading_path="X")  # type: ignore[arg-type]
    vectors = await deps.embedder.embed(["Nouveau texte qui remplace tout.", "rien"])
    # The old chunks are deleted inside the transaction, then an insert fails.
    with pytest.raises(Exception):  # noqa: B017 (each backend names its integrity error)
        await deps.store.save_document(replacement, [good, broken], vectors, deps.embedder.id)
    # Too few embeddings for the chunks: refused before anything is written.
    with pytest.raises(ValueError):
        await deps.store.save_document(replacement, [good, good], vectors[:1], deps.embedder.id)
    assert await _snapshot(deps, path.name) == before
    assert path.name in await found(deps, "audrey", CAPTURE_QUERY)
    keyword_ids = await deps.store.keyword_search("audrey", ["capture"], 20)
    assert keyword_ids  # the full-text index still has the old chunks
    assert "Nouveau texte" not in " ".join(await texts_of(deps, path.name))


class FailingEmbedder(Embedder):
    """The local embedder, failing from its `fail_from`-th batch on (a provider outage)."""

    def __init__(self, inner: Embedder, fail_from: int):
        self.inner = inner
        self.id, self.dim = inner.id, inner.dim
        self.default_threshold = inner.default_threshold
        self.batch_size = 2
        self.calls = 0
        self.fail_from = fail_from

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls >= self.fail_from:
            raise ProviderError("embeddings: HTTP 503", provider="embeddings", status=503)
        return await self.inner.embed_batch(texts)


async def test_an_embedding_outage_mid_file_skips_it_and_keeps_the_old_version(
    deps: Deps, tmp_path: Path
):
    path = files.write_md(tmp_path)
    other = files.write_md(tmp_path, "second-guide.md")
    await deps.ingester().ingest_paths([path, other], owner="audrey")
    before = await _snapshot(deps, path.name)
    total = await deps.store.count_chunks()
    path.write_text(files.markdown_text("Guide modifié"), encoding="utf-8")
    failing = FailingEmbedder(deps.embedder, fail_from=2)
    ingester = Ingester(deps.store, failing, deps.experts, deps.tagger)
    [result] = await ingester.ingest_paths([path], owner="audrey")
    assert result.status == "skipped" and "503" in result.detail
    assert await _snapshot(deps, path.name) == before
    assert await deps.store.count_chunks() == total


async def test_bad_files_are_reported_and_skipped_while_the_rest_proceeds(
    deps: Deps, tmp_path: Path
):
    folder = tmp_path / "kb"
    (folder / "sub").mkdir(parents=True)
    (folder / ".cache").mkdir()
    good = files.write_md(folder, "bon-guide.md")
    files.write_docx(folder / "sub", "autre-guide.docx")
    (folder / "casse.pdf").write_bytes(files.pdf_bytes()[:300])  # truncated PDF
    (folder / "vide.md").write_bytes(b"")
    (folder / "binaire.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "utf16-sans-bom.txt").write_bytes("Bonjour à toutes".encode("utf-16-le"))
    (folder / "tableur.xlsx").write_bytes(b"PK\x03\x04 fake spreadsheet")
    (folder / "sub" / "bon-guide.md").write_text("# Doublon\n\nMême nom.", encoding="utf-8")
    (folder / ".cache" / "cache.md").write_text("# Caché\n\nNe pas lire.", encoding="utf-8")
    missing = tmp_path / "absent.md"

    reported: list[str] = []
    results = await deps.ingester().ingest_paths(
        [folder, missing], owner="audrey", on_file=lambda path, _r: reported.append(path.name)
    )
    # Every file reported once, in the folder's order, whatever finished first.
    in_order = [
        p.name for p in sorted(folder.rglob("*")) if p.is_file() and ".cache" not in p.parts
    ]
    assert [r.filename for r in results] == ["absent.md", *in_order]
    assert reported == in_order
    by_name = {r.filename: r for r in results if r.detail.split(" ")[0] != "same"}
    assert by_name["absent.md"].skipped and "not found" in by_name["absent.md"].detail
    assert by_name["bon-guide.md"].status == "added"
    assert by_name["autre-guide.docx"].status == "added"
    expected = {
        "casse.pdf": "corrupt or unreadable PDF",
        "vide.md": "empty file",
        "binaire.txt": "unknown encoding",
        "utf16-sans-bom.txt": "unknown encoding",
        "tableur.xlsx": "unsupported file type '.xlsx'",
    }
    for name, reason in expected.items():
        assert by_name[name].skipped and reason in by_name[name].detail, by_name[name]
    duplicates = [r for r in results if r.filename == "bon-guide.md" and r.skipped]
    assert len(duplicates) == 1 and "same filename" in duplicates[0].detail
    assert "cache.md" not in by_name

    docs = {d.filename: d for d in await deps.store.list_documents()}
    assert set(docs) == {"bon-guide.md", "autre-guide.docx"}
    assert await deps.store.count_chunks() == sum(d.chunks for d in docs.values())
    assert (await deps.store.get_document(good.name)).title == "Guide du tunnel de vente"


async def test_a_file_that_turned_corrupt_keeps_its_last_good_version(deps: Deps, tmp_path: Path):
    path = files.write_pdf(tmp_path)
    await deps.ingester().ingest_paths([path], owner="audrey")
    before = await _snapshot(deps, path.name)
    path.write_bytes(b"%PDF-1.7\n%%EOF garbage")
    [result] = await deps.ingester().ingest_paths([path])
    assert result.skipped and "PDF" in result.detail
    assert await _snapshot(deps, path.name) == before


async def test_unknown_owner_is_refused_before_anything(deps: Deps, tmp_path: Path):
    from copines.errors import InputError

    path = files.write_md(tmp_path)
    with pytest.raises(InputError, match="unknown owner 'bob'; choose one of: auto, "):
        await deps.ingester().ingest_paths([path], owner="bob")
    assert await deps.store.list_documents() == []


async def test_sample_knowledge_is_tagged_as_named(deps: Deps, tmp_path: Path):
    from tests.conftest import EXAMPLES

    folder = tmp_path / "kb"
    shutil.copytree(EXAMPLES, folder)
    results = await deps.ingester().ingest_paths([folder])
    assert len(results) == 24 and not any(r.skipped for r in results)
    for r in results:
        expected = r.filename.split("-")[0].replace("agence", "shared")
        assert r.owner == expected, r
        assert r.reason.startswith("filename contains")

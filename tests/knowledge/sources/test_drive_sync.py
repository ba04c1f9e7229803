"""A Drive folder synced through a local server speaking the Drive and OAuth protocols: the
service account's JWT verified, files.list paged, Docs exported, PDF and docx downloaded, and
the same add / update / unchanged / remove cases as the website."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.google_drive import DOCX, FOLDER, GOOGLE_DOC, PDF, FakeDrive, service_account_key
from tests.knowledge import files
from tests.knowledge.sources.conftest import syncer, write_sources

DOC_V1 = (
    "<html><body><h1>Séquence de bienvenue</h1><h2>Le premier email</h2>"
    "<p>Envoie-le tout de suite après l'inscription : remercie, livre le lead magnet promis "
    "et annonce ce qui arrive dans les prochains jours de la séquence automatisée.</p>"
    "</body></html>"
).encode()
DOC_V2 = DOC_V1.replace(b"tout de suite", b"dans les cinq minutes")


@pytest.fixture
def drive(tmp_path: Path):
    with FakeDrive() as server:
        key, private = service_account_key(f"{server.url}/token")
        server.public_key = private.public_key()
        server.email = key["client_email"]
        (tmp_path / "sa.json").write_text(json.dumps(key))
        server.add("root", "folder1", "Audrey", FOLDER)
        server.add("folder1", "doc1", "Séquence de bienvenue", GOOGLE_DOC, DOC_V1)
        server.add("folder1", "pdf1", "guide-tunnel.pdf", PDF, files.pdf_bytes())
        docx = files.write_docx(tmp_path)
        server.add("folder1", "docx1", "guide-tunnel.docx", DOCX, docx.read_bytes())
        server.add("folder1", "img1", "photo.png", "image/png", b"\x89PNG")
        server.add("folder1", "sub1", "Archives", FOLDER)
        server.add(
            "sub1",
            "md1",
            "notes-instagram.md",
            "text/markdown",
            "# Notes reels\n\nUn reel par semaine, un hook fort, un appel à l'action "
            "clair en légende et une story pour relayer.".encode(),
        )
        yield server


def settings_for(drive: FakeDrive, tmp_path: Path) -> dict:
    sources = write_sources(
        tmp_path,
        "sources:\n  - name: drive-audrey\n    drive_folder: folder1\n    owner: audrey\n",
    )
    return {
        "sources_file": sources,
        "google_service_account_file": tmp_path / "sa.json",
        "drive_api_url": drive.url,
    }


def downloads(drive: FakeDrive, since: int = 0) -> list[str]:
    return [
        r.path.split("/")[4]
        for r in drive.requests[since:]
        if r.path.startswith("/drive/v3/files/") and "fields" not in r.query  # not files.get
    ]


async def test_a_drive_folder_is_synced_and_kept_in_sync(make_deps, tmp_path: Path, drive):
    async with make_deps(**settings_for(drive, tmp_path)) as deps:
        async with syncer(deps) as sync:
            [first] = (await sync.sync()).sources
        assert sorted(first.added) == [
            "drive/Archives/notes-instagram.md",
            "drive/Séquence de bienvenue",
            "drive/guide-tunnel.docx",
            "drive/guide-tunnel.pdf",
        ], first.errors
        assert first.errors == [] and first.status == "ok"
        assert drive.refused == []
        folder_get = next(r for r in drive.requests if r.path == "/drive/v3/files/folder1")
        assert folder_get.query == {
            "supportsAllDrives": "true",
            "fields": "id,mimeType,trashed",
        }
        listing = [r for r in drive.requests if r.path == "/drive/v3/files"]
        assert any(r.query.get("pageToken") for r in listing)  # paging followed
        assert listing[0].query["q"] == "'folder1' in parents and trashed = false"
        doc = await deps.store.get_document("drive/Séquence de bienvenue")
        assert doc.owner == "audrey" and doc.url == "https://docs.example.test/doc1/view"
        assert doc.title == "Séquence de bienvenue"
        assert any(
            c.heading_path.endswith("Le premier email") or "Le premier email" in c.text
            for c in await deps.store.all_chunks()
        )

        # One Doc edited, the PDF deleted, one download failing; the rest untouched.
        drive.change("doc1", DOC_V2, "2026-02-01T08:00:00.000Z")
        del drive.files["pdf1"]
        drive.change("docx1", b"changed", "2026-02-02T08:00:00.000Z")
        drive.broken.add("docx1")
        before = len(drive.requests)
        async with syncer(deps) as sync:
            [second] = (await sync.sync()).sources
        assert second.updated == ["drive/Séquence de bienvenue"]
        assert second.removed == ["drive/guide-tunnel.pdf"]
        assert second.unchanged == 1  # the Markdown file: same modifiedTime, not downloaded
        assert len(second.errors) == 1 and "guide-tunnel.docx: Drive: HTTP 500" in second.errors[0]
        assert sorted(set(downloads(drive, before))) == ["doc1", "docx1"]
        assert await deps.store.get_document("drive/guide-tunnel.docx") is not None  # kept
        assert await deps.store.get_document("drive/guide-tunnel.pdf") is None
        texts = "\n".join(c.text for c in await deps.store.all_chunks())
        assert "dans les cinq minutes" in texts and "tout de suite après" not in texts


async def test_a_refused_service_account_or_listing_removes_nothing(
    make_deps, tmp_path: Path, drive
):
    async with make_deps(**settings_for(drive, tmp_path)) as deps:
        async with syncer(deps) as sync:
            await sync.sync()
        kept = {d.filename for d in await deps.store.list_documents()}
        assert len(kept) == 4

        drive.list_status = 503
        async with syncer(deps) as sync:
            [failing] = (await sync.sync()).sources
        assert failing.status == "failed" and "Drive: HTTP 503" in failing.errors[0]

        drive.list_status = 200
        other, _ = service_account_key(f"{drive.url}/token")  # signed with a key Drive lacks
        (tmp_path / "sa.json").write_text(json.dumps(other))
        async with syncer(deps) as sync:
            [refused] = (await sync.sync()).sources
        assert refused.status == "failed"
        assert "token endpoint refused the service account" in refused.errors[0]
        assert drive.refused == ["invalid JWT signature"]
        assert {d.filename for d in await deps.store.list_documents()} == kept


async def test_a_folder_id_cannot_reach_into_the_drive_query(make_deps, tmp_path: Path, drive):
    settings = settings_for(drive, tmp_path)
    settings["sources_file"].write_text(
        "sources:\n  - name: sneaky\n    drive_folder: \"folder1' or 'root\"\n"
    )
    async with make_deps(**settings) as deps, syncer(deps) as sync:
        [report] = (await sync.sync()).sources
    assert report.status == "failed" and "is not a Drive folder id" in report.errors[0]
    assert [r for r in drive.requests if r.path == "/drive/v3/files"] == []


@pytest.mark.parametrize("fault", ["unshared", "trashed", "not a folder", "emptied"])
async def test_a_folder_that_lists_nothing_removes_nothing(
    make_deps, tmp_path: Path, drive, fault: str
):
    async with make_deps(**settings_for(drive, tmp_path)) as deps:
        async with syncer(deps) as sync:
            await sync.sync()
        kept = {d.filename for d in await deps.store.list_documents()}
        assert len(kept) == 4

        if fault == "unshared":  # or a typo in the id: Drive lists it as an empty folder
            drive.unshared.add("folder1")
            expected = "the folder folder1 is not found or not shared with sync@copines-test"
        elif fault == "trashed":
            drive.files["folder1"]["trashed"] = True
            expected = "Drive: the folder folder1 is in the trash"
        elif fault == "not a folder":
            drive.files["folder1"]["mimeType"] = GOOGLE_DOC
            expected = f"Drive: folder1 is not a folder ({GOOGLE_DOC})"
        else:  # everything moved out at once: more likely a mistake than a wish
            for file in drive.files.values():
                if file["parents"] == ["folder1"]:
                    file["parents"] = ["elsewhere"]
            expected = "the source lists none of its 4 known documents: nothing removed"
        async with syncer(deps) as sync:
            [report] = (await sync.sync()).sources
        assert report.status == "failed" and report.removed == []
        assert expected in report.errors[0], report.errors
        assert {d.filename for d in await deps.store.list_documents()} == kept


async def test_a_drive_file_deleted_by_hand_comes_back(make_deps, tmp_path: Path, drive):
    async with make_deps(**settings_for(drive, tmp_path)) as deps:
        async with syncer(deps) as sync:
            await sync.sync()
            await deps.store.delete_document("drive/guide-tunnel.pdf")
            [second] = (await sync.sync()).sources
        assert second.added == ["drive/guide-tunnel.pdf"] and second.unchanged == 3
        assert await deps.store.get_document("drive/guide-tunnel.pdf") is not None

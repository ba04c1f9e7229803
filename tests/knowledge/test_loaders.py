"""Loading each format into Markdown-flavoured text, and refusing what cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from copines.errors import InputError
from copines.knowledge.chunking import chunk_document
from copines.knowledge.loaders import decode_text, load_document
from tests.knowledge import files


def load(path: Path):
    return load_document(path, path.read_bytes())


@pytest.mark.parametrize("fmt", ["md", "html", "pdf", "docx"])
def test_headings_become_heading_paths(tmp_path: Path, fmt: str):
    loaded = load(files.WRITERS[fmt](tmp_path))
    assert loaded.title == "Guide du tunnel de vente"
    chunks = chunk_document(loaded.text, loaded.title)
    paths = [c.heading_path for c in chunks]
    assert "Guide du tunnel de vente > La page de capture" in paths
    assert any(p.startswith("Guide du tunnel de vente > La séquence de bienvenue") for p in paths)
    capture = next(c for c in chunks if c.heading_path.endswith("La page de capture"))
    assert "lead magnet" in capture.text
    # A chunk under one heading holds none of the next section's text.
    assert "séquence de bienvenue envoie" not in capture.text


def test_txt_keeps_paragraphs_and_title_from_the_filename(tmp_path: Path):
    loaded = load(files.write_txt(tmp_path))
    assert loaded.title == "Notes tunnel"
    assert "lead magnet" in loaded.text and "séquence de bienvenue" in loaded.text
    assert len(chunk_document(loaded.text, loaded.title)) >= 2


def test_html_drops_scripts_navigation_and_footers(tmp_path: Path):
    loaded = load(files.write_html(tmp_path))
    assert "tracking" not in loaded.text and "color:red" not in loaded.text
    assert "Mentions légales" not in loaded.text and "Accueil | Blog" not in loaded.text
    assert "- Email 1 : le cadeau" in loaded.text


def test_pdf_body_lines_are_joined_into_paragraphs(tmp_path: Path):
    loaded = load(files.write_pdf(tmp_path))
    assert "# Guide du tunnel de vente" in loaded.text
    assert "## La page de capture" in loaded.text
    # The PDF wraps lines; the loader joins them back into one paragraph.
    paragraph = next(b for b in loaded.text.split("\n\n") if b.startswith("Une page de capture"))
    assert "\n" not in paragraph and paragraph.count("lead magnet") == 3


def test_docx_lists_and_tables_are_kept(tmp_path: Path):
    loaded = load(files.write_docx(tmp_path))
    assert "- Email 1 : le cadeau" in loaded.text
    assert "Jour 1 | Livraison du guide" in loaded.text


def test_windows_1252_and_bom_are_read():
    assert decode_text("Étape numéro un".encode("cp1252")) == "Étape numéro un"
    assert decode_text("\ufeffÉtape".encode()) == "Étape"
    assert decode_text("Étape".encode("utf-16")) == "Étape"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("vide.md", b"", "empty file"),
        ("blanc.txt", b"  \n\n\t ", "empty file"),
        (
            "casse.pdf",
            b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage",
            "corrupt or unreadable PDF",
        ),
        ("pas-un-pdf.pdf", b"hello, I am not a pdf at all", "corrupt or unreadable PDF"),
        ("casse.docx", b"PK\x03\x04 not really a zip", "corrupt or unreadable DOCX"),
        ("binaire.md", bytes(range(256)) * 4, "unknown encoding"),
        ("utf16-sans-bom.txt", "Bonjour à toutes".encode("utf-16-le"), "unknown encoding"),
        ("tableur.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
        ("sans-texte.html", b"<html><script>x()</script></html>", "no text"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(name: str, data: bytes, reason: str):
    with pytest.raises(InputError, match=reason):
        load_document(Path(name), data)


def test_random_high_bytes_are_refused():
    import random

    rng = random.Random(7)
    noise = bytes(rng.randrange(128, 256) for _ in range(600))
    with pytest.raises(InputError, match="unknown encoding"):
        decode_text(noise)
    # Even when every byte happens to be a Windows-1252 letter, it is not French text.
    with pytest.raises(InputError, match="unknown encoding"):
        decode_text("ÒÉÈÀÇ".encode("cp1252") * 100)

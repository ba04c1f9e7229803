"""Structure-aware chunking: headings, paragraphs, sizes and overlap."""

from __future__ import annotations

from copines.knowledge.chunking import chunk_document
from tests.knowledge.files import markdown_text


def sentence(i: int) -> str:
    return f"Phrase numéro {i} qui parle de la méthode et de ses étapes concrètes."


def test_every_chunk_keeps_its_heading_path_and_positions_follow():
    chunks = chunk_document(markdown_text(), "Guide du tunnel de vente")
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[0].heading_path == "Guide du tunnel de vente"
    assert chunks[-1].heading_path == (
        "Guide du tunnel de vente > La séquence de bienvenue > Le premier email"
    )
    assert all(c.keywords for c in chunks)
    assert "email" in chunks[-1].keywords


def test_long_sections_are_cut_at_sentences_with_an_overlap():
    body = " ".join(sentence(i) for i in range(80))  # about 1000 words in one paragraph
    chunks = chunk_document(f"# Titre\n\n## Section\n\n{body}", "Titre")
    assert len(chunks) >= 4
    for chunk in chunks:
        assert len(chunk.text.split()) <= 230 + 30
        assert chunk.text.rstrip().endswith(".")  # never cut inside a sentence
        assert chunk.heading_path == "Titre > Section"
    # Each continued chunk opens with the last sentence(s) of the previous one (<= 30 words).
    for before, after in zip(chunks, chunks[1:], strict=False):
        last = before.text.rsplit(". ", 1)[-1].strip()
        opening = " ".join(after.text.split()[:30])
        assert last in opening, (before.text[-80:], after.text[:80])
    # Nothing is lost.
    joined = " ".join(c.text for c in chunks)
    assert all(sentence(i) in joined for i in range(80))


def test_small_sections_merge_and_keep_their_headings_as_text():
    text = "# Titre\n\n## A\n\nCourt texte A.\n\n## B\n\nCourt texte B.\n\n## C\n\nCourt texte C."
    chunks = chunk_document(text, "Titre")
    assert len(chunks) == 1
    assert chunks[0].heading_path == "Titre"
    assert "## A" in chunks[0].text and "## C\nCourt texte C." in chunks[0].text


def test_headings_inside_code_fences_are_not_headings():
    text = "# Titre\n\n## Vraie section\n\n```\n# pas un titre\ncode()\n```\n\nSuite du texte."
    chunks = chunk_document(text, "Titre")
    assert all("pas un titre" not in c.heading_path for c in chunks)
    assert any("# pas un titre" in c.text for c in chunks)


def test_a_run_on_sentence_is_cut_by_words():
    text = "mot " * 1000
    chunks = chunk_document(text, "Sans ponctuation")
    assert len(chunks) >= 4
    assert sum(c.text.count("mot") for c in chunks) >= 1000
    assert all(len(c.text.split()) <= 260 for c in chunks)


def test_empty_text_gives_no_chunk():
    assert chunk_document("", "Titre") == []
    assert chunk_document("\n\n# Titre seul\n\n", "Titre") == []

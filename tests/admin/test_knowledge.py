"""Knowledge bases in the console: list, upload then search, owner, delete; knowledge gaps."""

from __future__ import annotations

import re

from copines.admin.gaps import cluster, knowledge_gaps
from copines.admin.turns import read_turns
from copines.conversations import start_conversation
from copines.store.base import Escalation, Feedback, Message
from tests.admin.conftest import csrf_of

NEW_DOC = """# Podcast pour praticiennes

## Choisir son micro pour le podcast

Pour lancer ton podcast de sophrologie, un micro USB dynamique suffit au début :
le Samson Q2U ou l'ATR2100x captent ta voix sans l'écho de la pièce.

## Publier sur Spotify

Héberge les épisodes sur Ausha, qui diffuse le flux RSS vers Spotify et Apple Podcasts.
"""


async def test_documents_listed_per_owner_with_chunks(admin, admin_deps):
    page = await admin.get("/admin/knowledge")
    assert page.status_code == 200
    documents = await admin_deps.store.list_documents()
    assert len(documents) == 24
    for document in documents:
        assert document.filename in page.text
    assert "Commun" in page.text and "Audrey" in page.text and "Carole" in page.text
    total = sum(d.chunks for d in documents)
    assert f"24 documents · {total} passages" in page.text


async def test_upload_then_search_shows_the_new_passages(admin, admin_deps):
    question = "Quel micro choisir pour lancer mon podcast ?"
    before = await admin.get("/admin/knowledge", params={"expert": "carole", "q": question})
    assert "podcast-praticiennes.md" not in before.text

    csrf = await csrf_of(admin, "/admin/knowledge")
    response = await admin.post(
        "/admin/knowledge/upload",
        data={"csrf_token": csrf, "owner": "carole"},
        files=[
            ("files", ("podcast-praticiennes.md", NEW_DOC.encode(), "text/markdown")),
            ("files", ("notes.exe", b"MZ", "application/octet-stream")),
        ],
    )
    assert response.status_code == 200
    assert "ajouté" in response.text and "non pris en charge" in response.text
    document = await admin_deps.store.get_document("podcast-praticiennes.md")
    assert document.owner == "carole" and document.chunks >= 1

    page = await admin.get("/admin/knowledge", params={"expert": "carole", "q": question})
    expected = await admin_deps.retriever.search("carole", question)
    assert expected.passages[0].filename == "podcast-praticiennes.md"
    shown = re.findall(r"score (\d\.\d{3})", page.text)
    assert shown == [f"{p.score:.3f}" for p in expected.passages]  # exactly what she'd get
    assert "Samson Q2U" in page.text
    # Audrey does not see Carole's document.
    other = await admin.get("/admin/knowledge", params={"expert": "audrey", "q": question})
    assert "Samson Q2U" not in other.text


async def test_upload_with_owner_auto(admin, admin_deps):
    csrf = await csrf_of(admin, "/admin/knowledge")
    await admin.post(
        "/admin/knowledge/upload",
        data={"csrf_token": csrf, "owner": "auto"},
        files={"files": ("faq-horaires.txt", b"Horaires de l'agence : 9h-18h.", "text/plain")},
    )
    document = await admin_deps.store.get_document("faq-horaires.txt")
    assert document is not None and document.owner == "shared"  # 'faq' in its name


async def test_change_owner_and_delete(admin, admin_deps):
    document = (await admin_deps.store.list_documents("audrey"))[0]
    csrf = await csrf_of(admin, "/admin/knowledge")
    response = await admin.post(
        "/admin/knowledge/owner",
        data={"csrf_token": csrf, "filename": document.filename, "owner": "shared"},
    )
    assert response.status_code == 303
    assert (await admin_deps.store.get_document(document.filename)).owner == "shared"
    bad = await admin.post(
        "/admin/knowledge/owner",
        data={"csrf_token": csrf, "filename": document.filename, "owner": "nobody"},
    )
    assert bad.status_code == 422
    response = await admin.post(
        "/admin/knowledge/delete", data={"csrf_token": csrf, "filename": document.filename}
    )
    assert response.status_code == 303
    assert await admin_deps.store.get_document(document.filename) is None
    assert document.filename not in (await admin.get("/admin/knowledge")).text
    missing = await admin.post(
        "/admin/knowledge/delete", data={"csrf_token": csrf, "filename": document.filename}
    )
    assert missing.status_code == 404


def test_cluster_joins_close_vectors_only():
    vectors = [[1, 0, 0], [0.95, 0.05, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1]]
    import numpy as np

    groups = cluster(np.array(vectors, dtype=float), threshold=0.8)
    assert sorted(groups) == [[0, 1], [2, 3], [4]]


GAP_QUESTIONS = {
    # Audrey's base says little about invoicing: three ways to ask the same thing.
    "factures": [
        ("Comment faire mes factures automatiquement ?", 0.21, None),
        ("Comment automatiser l'envoi de mes factures ?", 0.25, None),
        ("Comment envoyer une facture automatique après un paiement ?", 0.18, None),
    ],
    # ... nor about podcasts (one asked, then a thumbs down on a good-scoring answer).
    "podcast": [
        ("Comment lancer un podcast pour mon activité ?", 0.22, None),
        ("Quel matériel pour enregistrer un podcast ?", 0.81, -1),
    ],
}


async def _seed_gaps(deps):
    for questions in GAP_QUESTIONS.values():
        for question, best, rating in questions:
            conversation, _ = await start_conversation(deps.store)
            await deps.store.add_message(Message(conversation.id, "user", question))
            near = "audrey-automation-zapier.md" if "factur" in question else None
            answer_id = await deps.store.add_message(
                Message(
                    conversation.id,
                    "assistant",
                    "…",
                    agent="audrey",
                    router="local",
                    sources=[{"filename": near, "score": best}] if near else [],
                    meta={"retrieval": {"best_score": best}},
                )
            )
            if rating:
                await deps.store.add_feedback(Feedback(conversation.id, answer_id, rating))
    # A well-answered question is no gap.
    conversation, _ = await start_conversation(deps.store)
    await deps.store.add_message(Message(conversation.id, "user", "Comment créer un tunnel ?"))
    await deps.store.add_message(
        Message(
            conversation.id,
            "assistant",
            "…",
            agent="audrey",
            meta={"retrieval": {"best_score": 0.82}},
        )
    )


async def test_knowledge_gaps_group_low_score_questions(admin, admin_deps):
    await _seed_gaps(admin_deps)
    messages = await admin_deps.store.messages_between()
    turns = read_turns(messages, await admin_deps.store.list_feedback())
    gaps = await knowledge_gaps(turns, admin_deps.embedder)
    groups = gaps["audrey"]
    as_sets = sorted(sorted(q.question for q in g.questions) for g in groups)
    assert as_sets == sorted(sorted(q for q, _, _ in qs) for qs in GAP_QUESTIONS.values())
    assert len(groups[0].questions) == 3  # the biggest topic first
    assert all("tunnel" not in q.question for g in groups for q in g.questions)
    thumbs = [q for g in groups for q in g.questions if q.thumbs_down]
    assert [q.question for q in thumbs] == ["Quel matériel pour enregistrer un podcast ?"]

    # A hand-off the visitor asked for is no knowledge gap; an off-topic one is searched now.
    for question, rule in (
        ("Je voudrais parler à quelqu'un de l'agence", "escalate-pattern"),
        ("Comment déclarer ma TVA en micro-entreprise ?", "off-topic"),
    ):
        conversation, _ = await start_conversation(admin_deps.store)
        await admin_deps.store.add_message(Message(conversation.id, "user", question))
        answer = await admin_deps.store.add_message(
            Message(
                conversation.id,
                "assistant",
                "Je transmets.",
                agent="escalate",
                meta={"rule": rule, "scores": {"audrey": 0.3, "carole": 0.2}},
            )
        )
        await admin_deps.store.add_escalation(
            Escalation(conversation.id, "hors champ", message_id=answer, closest_expert="audrey")
        )
    page = await admin.get("/admin/gaps")
    assert "quelqu&#39;un de l&#39;agence" not in page.text
    assert "Comment déclarer ma TVA" in page.text
    assert page.status_code == 200
    for qs in GAP_QUESTIONS.values():
        for question, _, _ in qs:
            assert question.replace("'", "&#39;") in page.text
    assert "3 sujets" in page.text
    assert "<code>audrey-automation-zapier.md</code> (3)" in page.text  # extend it
    assert "Aucun document n'a servi" in page.text  # the podcast: a new document
    assert "Comment créer un tunnel ?" not in page.text

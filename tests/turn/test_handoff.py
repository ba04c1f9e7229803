"""Hand-offs that fit their reason, and complaints: an apology and a human, never a sale."""

from __future__ import annotations

import re

import pytest

from copines.conversations import start_conversation
from copines.escalation import HANDOFF, handoff_message, handoff_reason, with_complaint
from copines.postprocess import analyze, complaint
from copines.routing import Decision
from copines.turn import TurnRunner

REASONS = [
    "emergency",
    "medical",
    "legal",
    "payment",
    "injection",
    "complaint",
    "human_request",
    "out_of_scope",
    "low_confidence",
]
INSULT = "vous êtes nulles, ça sert à rien votre truc"


def escalation(reason: str = "", **fields) -> Decision:
    return Decision("escalate", 0.9, reason=reason, **fields)


def test_every_reason_has_its_own_message_in_french():
    assert set(HANDOFF) == set(REASONS)
    texts = {reason: handoff_message(escalation(reason)) for reason in REASONS}
    assert len(set(texts.values())) == len(REASONS)  # one text per reason
    for reason, text in texts.items():
        assert re.search(r"\b(tu|te|t'|ta|ton|toi)\b", text), reason  # she is "tu"
        assert not re.search(r"\bvous\b", text), reason
        assert "merci pour ta question" not in text.lower(), reason


def test_an_emergency_first_says_whom_to_call():
    text = handoff_message(escalation("emergency"))
    first = re.split(r"(?<=\.) ", text)[0]
    for number in ("15", "112"):
        assert re.search(rf"\b{number}\b", first), first
    assert "3114" in text
    assert text.index("3114") < text.index("équipe")  # the numbers before the team


def test_a_complaint_gets_an_apology_and_a_human():
    text = handoff_message(escalation("complaint"))
    assert "désolée" in text and "équipe" in text and "revenir vers toi" in text


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("medical", ["médecin", "équipe"]),
        ("legal", ["avocat", "équipe"]),
        ("payment", ["paiement", "accès", "équipe"]),
        ("human_request", ["Bien sûr", "personne de l'équipe"]),
        ("out_of_scope", ["sort du champ"]),
        ("injection", ["Je ne peux pas faire ça"]),
    ],
)
def test_each_reason_says_what_fits_it(reason: str, words: list[str]):
    text = handoff_message(escalation(reason))
    for word in words:
        assert word in text
    if reason in ("medical", "legal"):
        assert "je ne peux pas" in text.lower()  # no advice, a human


def test_a_decision_without_a_reason_reads_one_from_its_rule():
    assert handoff_reason(
        escalation(primary_need="demande à parler à une personne de l'équipe")
    ) == ("human_request")
    assert handoff_reason(escalation(rule="off-topic")) == "out_of_scope"
    assert handoff_reason(escalation()) == "low_confidence"
    assert handoff_reason(escalation("not-a-reason")) == "low_confidence"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (INSULT, "insult"),
        ("Je veux être remboursée, la formation ne m'a rien apporté", "refund"),
        ("C'est une arnaque votre programme", "insult"),
        ("Je suis très déçue de la formation, pas du tout ce qui était promis", "complaint"),
        ("Mon tunnel est nul, je n'y arrive pas", ""),  # her own work: not a complaint
        ("Est-ce que ça sert à rien de poster tous les jours ?", ""),
        ("Combien coûte l'accompagnement ?", ""),
    ],
)
def test_complaints_refunds_and_insults_are_recognised(message: str, kind: str):
    assert complaint(message) == kind


async def test_a_complaint_is_negative_and_never_an_upsell(embedder):
    for message in (INSULT, "Je veux être remboursée de la formation, c'est trop cher"):
        got = analyze(message, await embedder.embed_one(message), [])
        assert got.sentiment == "negative" and not got.upsell and got.complaint


def test_a_complaint_turns_an_expert_decision_into_a_handoff():
    expert = Decision("audrey", 0.95, rule="semantic")
    handed = with_complaint(expert, INSULT)
    assert handed.escalated and handed.reason == "complaint"
    assert with_complaint(expert, "Comment créer un tunnel ?") is expert
    # What the router saw first and matters more stays.
    emergency = escalation("emergency")
    assert with_complaint(emergency, INSULT) is emergency


async def test_an_insult_reaches_a_human_with_an_apology_not_lead_magnet_lines(knowledge_deps):
    runner = TurnRunner(knowledge_deps)
    conversation, _ = await start_conversation(knowledge_deps.store)
    result = await runner.run(conversation.id, INSULT)
    await runner.aclose()
    assert result.escalated and result.sources == []
    assert "désolée" in result.response and "lead magnet" not in result.response.lower()
    assert result.sentiment == "negative" and not result.upsell
    [open_escalation] = await knowledge_deps.store.list_escalations()
    assert open_escalation.conversation_id == conversation.id
    assert open_escalation.meta["reason"] == "complaint"


@pytest.mark.parametrize(
    "question",
    [
        "Est-ce que la formation est remboursable si elle ne me convient pas ?",
        "Quel est le délai pour demander un remboursement ?",
    ],
)
def test_a_question_about_the_refund_policy_is_not_a_complaint(question: str):
    assert complaint(question) == ""

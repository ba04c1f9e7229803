"""The offline responder: an honest, extractive answer from the passages, in the expert's voice.

Used when no chat model is configured (the embedded default). It quotes the sentences of the
expert's passages that best match the question, says where they come from, and ends with one
concrete next action. It never pretends to be a model: the answer is labelled `offline`.
"""

from __future__ import annotations

import re

from copines.experts import Expert
from copines.store.base import Passage
from copines.text import fold, search_terms, stem, words

OFFLINE_MODEL = "offline"

_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")
_MARKUP = re.compile(r"^\s*(#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)")
_ACTION = re.compile(
    r"\b(commence|cree|choisis|ecris|teste|note|ouvre|programme|publie|installe|relie|"
    r"prepare|fais|definis|liste|ajoute|planifie|filme|lance|verifie|mets)\b"
)


def _sentences(text: str) -> list[str]:
    out = []
    for raw in _SENTENCE.split(text):
        sentence = _MARKUP.sub("", raw).replace("**", "").replace("__", "").strip().strip("*_`")
        sentence = sentence.rstrip(" ;,")
        if len(sentence.split()) >= 5 and not sentence.endswith(":"):
            sentence = sentence[0].upper() + sentence[1:]
            out.append(sentence if sentence[-1] in ".!?…" else sentence + ".")
    return out


def _overlap(terms: set[str], sentence: str) -> float:
    if not terms:
        return 0.0
    stems = {stem(w) for w in words(sentence)}
    return sum(1 for t in terms if t in stems) / len(terms)


def _voice(expert: Expert) -> tuple[bool, bool]:
    """(numbered steps, emojis), read from the expert's style rules."""
    rules = fold(" ".join(expert.style_rules + expert.persona))
    return ("numerot" in rules), ("emoji" in rules)


class OfflineResponder:
    """Composes answers without any model, from at most three passages."""

    model = OFFLINE_MODEL

    def __init__(self, max_sentences: int = 5, max_words: int = 300):
        self.max_sentences = max_sentences
        self.max_words = max_words

    def pick(self, question: str, passages: list[Passage]) -> list[tuple[str, Passage]]:
        """The sentences worth quoting, best passages first, each with its passage."""
        terms = set(search_terms(question))
        chosen: list[tuple[float, int, str, Passage]] = []
        for rank, passage in enumerate(passages[:3]):
            scored = [
                (_overlap(terms, s) - 0.02 * i, i, s)
                for i, s in enumerate(_sentences(passage.text))
            ]
            scored.sort(reverse=True)
            per_passage = 2 if rank == 0 else 1
            for score, i, sentence in scored[:per_passage]:
                chosen.append((score - 0.1 * rank, i, sentence, passage))
        chosen.sort(key=lambda c: -c[0])
        kept = chosen[: self.max_sentences]
        # Quote in reading order: by passage rank, then by position in the passage.
        order = {id(p): r for r, p in enumerate(passages)}
        kept.sort(key=lambda c: (order.get(id(c[3]), 9), c[1]))
        return [(sentence, passage) for _, _, sentence, passage in kept]

    def small_talk(self, expert: Expert) -> str:
        """A short, warm reply to thanks or a greeting."""
        _, emojis = _voice(expert)
        topics = ", ".join(expert.tags[:3]) if expert.tags else expert.title.lower()
        return (
            f"Avec plaisir{' ✨' if emojis else ''} ! Si tu as une question ({topics}...), "
            f"écris-la-moi : je suis {expert.name} et je suis là pour t'aider."
        )

    def answer(self, expert: Expert, question: str, passages: list[Passage]) -> str:
        """The offline answer (French, "tu"), citing its sources."""
        numbered, emojis = _voice(expert)
        picked = self.pick(question, passages)
        if not picked:
            return (
                f"Je suis {expert.name} {'✨ ' if emojis else ''}— je réponds pour l'instant sans "
                "modèle de langage, à partir de mes fiches, et je n'y trouve rien qui "
                "corresponde vraiment à ta question. Reformule-la avec un ou deux mots-clés "
                "(l'outil, le format, l'étape qui te bloque), ou demande à parler à l'équipe : "
                "une personne de l'agence te répondra."
            )
        intro = (
            f"Voici ce que disent mes fiches sur ta question{' ✨' if emojis else ''} "
            "(réponse composée hors ligne à partir de mes ressources) :"
        )
        lines = []
        for i, (sentence, _passage) in enumerate(picked, 1):
            bullet = f"{i}." if numbered else "-"
            lines.append(f"{bullet} {sentence}")
        titles = []
        for _, passage in picked:
            title = passage.title or passage.filename
            if title not in titles:
                titles.append(title)
        sources = "Sources : " + ", ".join(f"« {t} »" for t in titles) + "."
        action_source = next((s for s, _ in picked if _ACTION.search(fold(s))), None)
        if action_source:
            action = f"Ton action pour aujourd'hui : {action_source[0].lower()}{action_source[1:]}"
        else:
            action = f"Ton action pour aujourd'hui : relis la fiche « {titles[0]} » et applique sa première étape."
        if emojis:
            action = "👉 " + action
        text = "\n\n".join([intro, "\n".join(lines), sources, action])
        return text

"""The offline responder: an extractive answer from the structure of the best passages.

Used when no chat model is configured (the embedded default); its answers are labelled
`offline` by the turn, so the text itself never talks about how it was made. It finds the
section of the passages that answers the question and gives it as written: its steps in
order, or the figure with the sentence that explains it. It adds the other lines that match
the question best, shows a "mistakes" line only as such ("À éviter : ..."), and never quotes
checklist boxes, lead-ins whose list it left out, or notes meant for the team. Sources are
not named in the text: the response's `sources` field carries them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from copines.experts import Expert
from copines.knowledge.chunking import Unit, passage_units
from copines.knowledge.retrieval import lexical_query
from copines.providers.embeddings import Embedder
from copines.providers.rerank import asks_figure, holds_figure
from copines.store.base import Passage
from copines.text import fold, search_terms, stem, words

OFFLINE_MODEL = "offline"
PITFALL_LABEL = "À éviter : "

_SENTENCE = re.compile(r"(?<=[.!?…])\s+(?=[A-ZÀ-ÖØ-Þ0-9«\"'(])")
_FIGURE = re.compile(r"\d")
_FIGURE_QUESTION = re.compile(
    r"\b(combien|prix|tarifs?|cout\w*|coute\w*|budget|taux|pourcentage|nombre|duree|delai|"
    r"frequence|quand|how (much|many)|euros?|minutes?|heures?|jours?|semaines?|mois|"
    r"fois par)\b"
)
_MISTAKES_QUESTION = re.compile(
    r"\b(erreurs?|eviter|pieges?|ne (pas|jamais) faire|faux pas|a ne pas|mistakes?)\b"
)
# A how-to question wants the whole list, in order; a "what is" question the matching lines.
_HOW_QUESTION = re.compile(
    r"\b(comment|etapes?|quoi mettre|que mettre|par ou|methode|process\w*|checklist|"
    r"quelles? (sont les )?(etapes|regles|elements|points)|liste|idees?|exemples?)\b"
)
# A sentence that announces what comes next ("Voici comment...", "Elle contient :").
_ANNOUNCE = re.compile(r"^(voici|voila|suis ces|les etapes|en resume|exemples?\b)")
_ACTION = re.compile(
    r"^(commence|cree|choisis|ecris|teste|note|ouvre|programme|publie|installe|relie|"
    r"prepare|fais|definis|liste|ajoute|planifie|filme|lance|verifie|mets|utilise|configure|"
    r"envoie|redige|bloque|garde|pose|propose|reprends|demande|regarde|active|connecte)\b"
)

# "c'est quoi X", "X ça veut dire quoi": a line that starts "X : ..." defines it.
_DEFINITION = re.compile(
    r"(c'?est quoi|qu'?est-ce qu|ca veut dire|veut dire quoi|signifie|definition|ca sert a quoi)"
)

MAX_ITEMS = 8
EXTRA_LINES = 3  # lines from elsewhere in the passages that match the question well
EXTRA_FLOOR = 0.3  # ... this well (weight: word overlap + 0.8 x cosine)
SEMANTIC_WEIGHT = 0.8  # the cosine (USE: 0.1 unrelated to 0.6 close) against word overlap
WORD_BUDGET = 230  # room left for the opening and the closing line under the 300-word cap
INTRO_PENALTY = 0.12  # a document's opening paragraph restates its title: weaker evidence


@dataclass
class _Scored:
    unit: Unit
    passage: int  # rank of its passage
    index: int  # position in the passage
    score: float

    @property
    def key(self) -> tuple[int, int]:
        return (self.passage, self.index)


def _overlap(terms: set[str], text: str) -> float:
    if not terms:
        return 0.0
    stems = {stem(w) for w in words(text)}
    return sum(1 for t in terms if t in stems) / len(terms)


def _voice(expert: Expert) -> tuple[bool, bool]:
    """(numbered steps, emojis), read from the expert's style rules."""
    rules = fold(" ".join(expert.style_rules + expert.persona))
    return ("numerot" in rules), ("emoji" in rules)


def _sentence_case(text: str) -> str:
    text = text.strip().rstrip(" ;,")
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in '.!?…:»")' else text + "."


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def _words(text: str) -> int:
    return len(text.split())


def _defines(terms: set[str], text: str) -> bool:
    """The line starts with a term of the question followed by ':' ("Tripwire : une ...")."""
    head, colon, _ = text.partition(" : ")
    return (
        bool(colon)
        and _words(head) <= 4
        and _overlap(terms, head) > 0
        and bool({stem(w) for w in words(head)} & terms)
    )


def _announces(text: str) -> bool:
    """A sentence (or paragraph) that announces a list: "Voici comment...", "... :"."""
    text = text.strip()
    return text.endswith(":") or bool(_ANNOUNCE.search(fold(text)))


def _without_announcements(text: str) -> str:
    """The paragraph without the sentences that announce a list it does not bring."""
    return " ".join(s for s in _sentences(text) if not _announces(s))


class OfflineResponder:
    """Composes answers without any model, from at most three passages."""

    model = OFFLINE_MODEL

    def __init__(self, max_sentences: int = 5, max_words: int = 300):
        self.max_sentences = max_sentences
        self.max_words = max_words
        self.budget = min(WORD_BUDGET, max(60, max_words - 70))

    # Reading ------------------------------------------------------------------------
    @staticmethod
    def _readable(passages: list[Passage]) -> list[tuple[int, int, Unit, bool]]:
        """(passage rank, position, unit, in the document's opening) of the usable units."""
        out = []
        for rank, passage in enumerate(passages[:3]):
            path = [h for h in passage.heading_path.split(" > ") if h.strip()]
            for index, unit in enumerate(passage_units(passage.text, passage.heading_path)):
                if unit.internal or _words(unit.text) < 2:
                    continue
                opening = (
                    len(path) <= 1
                    and unit.kind == "para"
                    and unit.heading == (path[0] if path else "")
                )
                out.append((rank, index, unit, opening))
        return out

    def units(
        self,
        question: str,
        passages: list[Passage],
        semantic: dict[tuple[int, int], float] | None = None,
    ) -> list[_Scored]:
        """Every usable unit of the best three passages, scored against the question: the
        share of its words it holds, its heading's, and (when known) the cosine of their
        embeddings, which finds the answer to a question worded unlike it."""
        terms = set(search_terms(lexical_query(question)))
        definition = _DEFINITION.search(fold(question)) is not None
        out: list[_Scored] = []
        for rank, index, unit, opening in self._readable(passages):
            score = _overlap(terms, unit.text) + 0.35 * _overlap(terms, unit.heading) - 0.08 * rank
            if semantic:
                score += SEMANTIC_WEIGHT * semantic.get((rank, index), 0.0)
            if opening:
                score -= INTRO_PENALTY
            if definition and _defines(terms, unit.text):
                score += 0.3
            out.append(_Scored(unit, rank, index, score))
        return out

    async def similarities(
        self, question: str, passages: list[Passage], embedder: Embedder
    ) -> dict[tuple[int, int], float]:
        """The cosine between the question and each usable unit (vectors cached by the
        embedder: the same passages come back turn after turn)."""
        readable = self._readable(passages)
        if not readable:
            return {}
        texts = [question, *(unit.text for _, _, unit, _ in readable)]
        vectors = await embedder.embed_many(texts)
        q = vectors[0]
        return {
            (rank, index): float(q @ v)
            for (rank, index, _, _), v in zip(readable, vectors[1:], strict=True)
        }

    def pick(self, question: str, passages: list[Passage]) -> list[tuple[str, Passage]]:
        """The lines the answer gives (pitfalls labelled), each with its passage."""
        chosen = self._choose(question, passages)
        return [(self._line(s), passages[s.passage]) for s in chosen]

    def _choose(
        self,
        question: str,
        passages: list[Passage],
        semantic: dict[tuple[int, int], float] | None = None,
    ) -> list[_Scored]:
        scored = self.units(question, passages, semantic)
        folded = fold(question)
        mistakes = bool(_MISTAKES_QUESTION.search(folded))
        figure = bool(_FIGURE_QUESTION.search(folded))
        how = bool(_HOW_QUESTION.search(folded))
        advice = [s for s in scored if not s.unit.pitfall]
        # Only pitfalls found: they answer, as pitfalls ("À éviter : ...").
        pool = scored if mistakes or not advice else advice
        if not pool:
            return []

        def weight(s: _Scored) -> float:
            has_figure = figure and bool(_FIGURE.search(s.unit.text))
            asked = mistakes and s.unit.pitfall  # "quelles erreurs éviter ?"
            return s.score + (0.25 if has_figure else 0.0) + (0.4 if asked else 0.0)

        best = max(pool, key=weight)
        section = [
            s for s in pool if (s.passage, s.unit.heading) == (best.passage, best.unit.heading)
        ]
        chosen = self._section_lines(question, section, best, figure, how)
        used = sum(_words(s.unit.text) for s in chosen)
        # The other lines that match the question best, wherever they are; more of them
        # when the section says little.
        taken = {s.key for s in chosen}
        extras: list[_Scored] = []
        for s in sorted(pool, key=lambda s: -weight(s))[:10]:
            floor = EXTRA_FLOOR if used >= 70 else 0.2
            if (
                len(extras) >= EXTRA_LINES
                or s.key in taken
                or weight(s) < floor
                or _announces(s.unit.text)
            ):
                continue
            text = s.unit.text
            if s.unit.kind == "para" and _words(text) > 40:
                text = self._best_sentences(question, text, figure, 2)
            if used + _words(text) > self.budget:
                continue
            extras.append(replace(s, unit=replace(s.unit, text=text)))
            used += _words(text)
        chosen += sorted(extras, key=lambda s: s.key)
        # A pitfall that matches the question is worth a warning, labelled as one.
        if pool is advice:
            for s in sorted((s for s in scored if s.unit.pitfall), key=lambda s: -s.score)[:2]:
                if s.score >= 0.5 and used + _words(s.unit.text) <= self.budget:
                    chosen.append(s)
                    used += _words(s.unit.text)
        return chosen

    def _section_lines(
        self, question: str, section: list[_Scored], best: _Scored, figure: bool, how: bool
    ) -> list[_Scored]:
        """The part of the section that answers: the best line's list with its lead-in (the
        whole list, in order, for steps or a how-to question; else the lines that match), or
        the best paragraph with the list it announces; a short opening paragraph first."""
        section = sorted(section, key=lambda s: s.index)
        groups: dict[int, list[_Scored]] = {}
        for s in section:
            groups.setdefault(s.unit.group, []).append(s)
        order = list(groups)
        keep: list[_Scored] = []
        if best.unit.kind == "item":
            items = groups[best.unit.group]
        else:
            keep.append(best)
            position = order.index(best.unit.group)
            following = groups[order[position + 1]] if position + 1 < len(order) else []
            is_list = bool(following) and following[0].unit.kind == "item"
            items = following if is_list and _announces(best.unit.text) else []
        if items:
            top = max(s.score for s in items)
            mean = sum(s.score for s in items) / len(items)
            if not (items[0].unit.ordered or (how and mean >= 0.5 * top)):
                # Independent entries (a glossary, a table): the ones that answer, in order.
                items = [s for s in items if s is best or s.score >= max(0.2, 0.6 * top)]
        if items:
            if len(items) > MAX_ITEMS:  # a window of the list around the best line
                at = items.index(best) if best in items else 0
                start = max(0, min(at - MAX_ITEMS // 2, len(items) - MAX_ITEMS))
                items = items[start : start + MAX_ITEMS]
            keep.extend(items)
            position = order.index(items[0].unit.group)
            if position > 0:
                lead = groups[order[position - 1]][-1]
                if lead.unit.kind == "para" and lead not in keep:
                    keep.append(lead)
        first = section[0]
        if (
            first.unit.kind == "para"
            and first not in keep
            and not _announces(first.unit.text)
            and _words(first.unit.text) <= 45
            and (first.score >= 0.2 or not keep)
        ):
            keep.append(first)
        if not keep:
            keep.append(best)
        out: list[_Scored] = []
        used = 0
        for s in sorted(keep, key=lambda s: s.index):
            unit = s.unit
            if unit.kind == "para" and _words(unit.text) > 60 and not unit.lead_in:
                unit = replace(unit, text=self._best_sentences(question, unit.text, figure, 3))
            if used + _words(unit.text) > self.budget:
                break
            out.append(replace(s, unit=unit))
            used += _words(unit.text)
        return out

    @staticmethod
    def _best_sentences(question: str, text: str, figure: bool, n: int) -> str:
        terms = set(search_terms(lexical_query(question)))
        sentences = _sentences(text)
        ranked = sorted(
            range(len(sentences)),
            key=lambda i: (
                -(
                    _overlap(terms, sentences[i])
                    + (0.3 if figure and _FIGURE.search(sentences[i]) else 0.0)
                    - 0.01 * i
                )
            ),
        )
        keep = sorted(ranked[:n])
        return " ".join(sentences[i] for i in keep)

    @staticmethod
    def _line(s: _Scored) -> str:
        text = _sentence_case(s.unit.text)
        return PITFALL_LABEL + text[0].lower() + text[1:] if s.unit.pitfall else text

    # Writing ------------------------------------------------------------------------
    def small_talk(self, expert: Expert) -> str:
        """A short, warm reply to thanks or a greeting."""
        _, emojis = _voice(expert)
        topics = ", ".join(expert.tags[:3]) if expert.tags else expert.title.lower()
        return (
            f"Avec plaisir{' ✨' if emojis else ''} ! Si tu as une question ({topics}...), "
            f"écris-la-moi : je suis {expert.name} et je suis là pour t'aider."
        )

    async def compose(
        self,
        expert: Expert,
        question: str,
        passages: list[Passage],
        embedder: Embedder | None = None,
    ) -> str:
        """`answer`, with the units also compared to the question by `embedder`."""
        semantic = await self.similarities(question, passages, embedder) if embedder else None
        return self.answer(expert, question, passages, semantic)

    def answer(
        self,
        expert: Expert,
        question: str,
        passages: list[Passage],
        semantic: dict[tuple[int, int], float] | None = None,
    ) -> str:
        """The offline answer (French, "tu"), in the expert's voice; no source names in it."""
        numbered, emojis = _voice(expert)
        chosen = self._tidy(self._choose(question, passages, semantic))
        if not chosen:
            return (
                f"Je suis {expert.name}{' ✨' if emojis else ''}, et sur ce point précis je "
                "n'ai pas de réponse sûre à te donner. Reformule ta question avec un ou deux "
                "mots-clés (l'outil, le format, l'étape qui te bloque), ou demande à parler à "
                "l'équipe : une personne de l'agence te répondra."
            )
        advice = [s for s in chosen if not s.unit.pitfall]
        pitfalls = [s for s in chosen if s.unit.pitfall]
        steps = sum(1 for s in advice if s.unit.kind == "item")
        blocks: list[list[str]] = []
        if advice:
            # The section's heading names the topic; a document's title would name a source.
            titles = {p.title for p in passages} | {
                p.heading_path.split(" > ")[0] for p in passages
            }
            heading = advice[0].unit.heading
            named = (
                _overlap(set(search_terms(lexical_query(question))), heading) > 0
            )  # it names her topic
            # A heading that gives a figure ("Le plan type sur 7 à 10 jours") is part of the
            # answer to a question that asks for one.
            figure = asks_figure(question) and holds_figure(heading)
            topic = heading if (named or figure) and heading not in titles else ""
            blocks.append([self._opening(topic, steps >= 2, emojis)])
        # Consecutive items of one list form one block, numbered in Audrey's voice when
        # there are at least two of them.
        runs: list[list[_Scored]] = []
        for s in advice:
            same = (
                runs
                and s.unit.kind == "item"
                and runs[-1][-1].unit.kind == "item"
                and (runs[-1][-1].passage, runs[-1][-1].unit.group) == (s.passage, s.unit.group)
            )
            if same:
                runs[-1].append(s)
            else:
                runs.append([s])
        shown = advice[0].unit.heading if advice else ""
        for run in runs:
            block: list[str] = []
            heading = run[0].unit.heading
            if run[0].unit.kind == "item" and heading != shown and heading not in titles:
                # A list from another section says which: its heading comes with it.
                block.append(f"**{heading}**")
            shown = heading
            if run[0].unit.kind != "item":
                block.append(self._line(run[0]))
            else:
                count = sum(1 for s in run if not s.unit.nested)
                number = 0
                for s in run:
                    if s.unit.nested:
                        block.append(f"   - {self._line(s)}")
                    elif numbered and count >= 2:
                        number += 1
                        block.append(f"{number}. {self._line(s)}")
                    else:
                        block.append(f"- {self._line(s)}")
            blocks.append(block)
        if pitfalls:
            blocks.append([f"- {self._line(s)}" for s in pitfalls])
        action = self._action(advice)
        if action:
            blocks.append([("👉 " if emojis else "") + action])
        return "\n\n".join("\n".join(b) for b in blocks if b)

    @staticmethod
    def _tidy(chosen: list[_Scored]) -> list[_Scored]:
        """No lead-in without its list: a paragraph keeps a sentence that announces a list
        only when it is its last sentence and the list comes right after it."""
        out: list[_Scored] = []
        for i, s in enumerate(chosen):
            if s.unit.kind != "para":
                out.append(s)
                continue
            following = chosen[i + 1] if i + 1 < len(chosen) else None
            brings = (
                following is not None
                and following.unit.kind == "item"
                and following.passage == s.passage
                and following.unit.group == s.unit.group + 1
            )
            sentences = _sentences(s.unit.text)
            if brings and sentences and _announces(sentences[-1]):
                text = " ".join([*(x for x in sentences[:-1] if not _announces(x)), sentences[-1]])
            else:
                text = _without_announcements(s.unit.text)
            if text.strip():
                out.append(replace(s, unit=replace(s.unit, text=text)))
        return out

    @staticmethod
    def _opening(heading: str, steps: bool, emojis: bool) -> str:
        topic = f" sur **{heading}**" if heading and _words(heading) <= 12 else ""
        if emojis:
            return f"Je te donne l'essentiel{topic} ✨"
        return f"Voici l'essentiel{topic}" + (", étape par étape." if steps else ".")

    @staticmethod
    def _action(advice: list[_Scored]) -> str:
        for s in advice:
            for sentence in _sentences(s.unit.text):
                if (
                    _ACTION.search(fold(sentence))
                    and 4 <= _words(sentence) <= 30
                    and " : " not in sentence
                    and not sentence.rstrip().endswith(":")
                ):
                    text = _sentence_case(sentence)
                    return f"Ton action pour aujourd'hui : {text[0].lower()}{text[1:]}"
        if any(s.unit.kind == "item" for s in advice):
            return (
                "Ton action pour aujourd'hui : choisis le premier point de cette liste et "
                "mets-le en place avant ce soir."
            )
        return ""

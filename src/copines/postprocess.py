"""After the answer: loop detection, sentiment, upsell triggers, formatting. All offline."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from copines.signals import default_model
from copines.text import fold

LOOP_SIMILARITY = 0.45  # USE cosine: above this, two visitor messages ask the same thing
LOOP_WITH_MARKER = 0.15  # "je reformule", "toujours pas": a weak echo is enough
LOOP_HISTORY = 0.4  # two earlier messages this close ask the same thing
LOOP_ECHO = 0.35  # ... and a message this close to one of them comes back to it
DEEP_QUESTIONS = 3  # this many long questions before the current one: deeper help may fit

ACCOMPANIMENT_NOTE = (
    "💡 J'ai l'impression qu'on tourne un peu en rond sur ce sujet, et c'est normal : certaines "
    "choses se débloquent mieux à plusieurs. L'équipe de L'Agence des Copines propose un "
    "accompagnement personnalisé ; si tu veux, dis-le et quelqu'un de l'équipe te recontacte."
)

_REPEAT = re.compile(
    r"\b(encore|toujours|je reformule|je reviens sur|a nouveau|de nouveau|re-?demande|"
    r"au final|tu disais|comme je disais|deja demande|meme chose|rien a faire|ca change rien)\b"
)

# Folded French cues, matched at the start of a word (so "decourag" covers "découragée").
# Weights are rough strengths; a negation just before a positive cue flips it.
_POSITIVE = {
    "merci": 1.0,
    "super": 1.0,
    "top": 1.0,
    "genial": 1.5,
    "parfait": 1.5,
    "bravo": 1.5,
    "adore": 1.5,
    "j'adore": 1.5,
    "trop bien": 1.5,
    "content": 1.5,
    "ravie": 1.5,
    "ravi ": 1.5,
    "heureuse": 1.5,
    "fiere": 1.5,
    "aux anges": 2.0,
    "hate": 1.0,
    "motive": 1.5,
    "cartonn": 1.5,
    "enfin": 0.5,
    "clair": 0.5,
    "wow": 1.5,
    "excellent": 1.5,
    "aidee": 1.0,
    "prete": 1.0,
    "felicit": 1.0,
    "reussi": 1.0,
    "exactement ce qu": 1.5,
    "ca marche": 0.5,
    "incroyable": 1.5,
    "formidable": 1.5,
    "chouette": 1.5,
    "youpi": 2.0,
    "magnifique": 1.5,
    "merveille": 1.5,
    "j'ai compris": 1.0,
    "ca y est": 1.0,
    "premiere vente": 1.5,
}
_NEGATIVE = {
    "frustr": 2.0,
    "marre": 2.0,
    "decourag": 2.0,
    "desesp": 2.0,
    "nul": 1.5,
    "affreu": 2.0,
    "horrible": 2.0,
    "moche": 1.5,
    "decu": 2.0,
    "deception": 2.0,
    "perdue": 1.5,
    "perdu": 1.0,
    "enerv": 2.0,
    "stress": 1.5,
    "epuis": 2.0,
    "debord": 1.5,
    "regrett": 2.0,
    "bloque": 1.0,
    "pff": 1.5,
    "casse": 1.5,
    "plante": 1.5,
    "rien ne marche": 2.0,
    "ne marche pas": 1.5,
    "ne marche plus": 1.5,
    "ne fonctionne pas": 1.5,
    "ne fonctionne plus": 1.5,
    "n'arrive pas": 1.0,
    "n'y arrive": 1.5,
    "n'y arriverai": 1.5,
    "illegitime": 2.0,
    "ne m'aide pas": 2.0,
    "trop vague": 1.5,
    "trop complique": 1.5,
    "fichu": 1.5,
    "galer": 1.5,
    "impossible": 1.0,
    "zero": 0.5,
    "0 like": 1.5,
    "aucune vue": 1.5,
    "aucun resultat": 1.5,
    "cloche": 1.0,
    "desolee": 0.5,
    "ca change rien": 1.5,
    "toujours aussi": 1.0,
    "toujours pas": 1.0,
    "comprends rien": 1.5,
    "plus quoi faire": 2.0,
    "rate": 1.0,
    "angoiss": 2.0,
    "inquiet": 1.5,
    "panique": 2.0,
    "peur": 1.0,
    "triste": 2.0,
    "colere": 2.0,
    "deprim": 2.0,
    "honte": 1.5,
    "demoralis": 2.0,
    "lasse": 1.0,
    "j'en peux plus": 2.0,
    "indesirables": 1.0,
    "bug": 1.0,
    "erreur": 1.0,
    "probleme": 0.5,
    "souci": 0.5,
    "😩": 1.5,
    "😔": 1.5,
    "😡": 2.0,
    "😭": 1.5,
    "😞": 1.5,
    "😢": 1.5,
    "🙁": 1.5,
}
_EMOJI_POSITIVE = ("🙏", "😊", "🥳", "😍", "🎉", "❤", "💪", "✨", "🤩", "😁", "🥰")
_NEGATION = re.compile(r"\b(ne|n'|pas|jamais)\b")
# Each cue's pattern compiled once (a cue starts a word); the plain substring test in
# `sentiment` skips the regex for the cues a message does not hold, which is nearly all.
_POSITIVE_CUES = [(cue, re.compile(r"(?<!\w)" + re.escape(cue)), w) for cue, w in _POSITIVE.items()]
_NEGATIVE_CUES = [(cue, re.compile(r"(?<!\w)" + re.escape(cue)), w) for cue, w in _NEGATIVE.items()]

_UPSELL = re.compile(
    r"\b(tarifs?|prix|combien (coute|coutent|ca coute)|coute combien|"
    r"formations?\b(?! de \w+ sur)|programmes? (adapte|de lancement)|votre programme|"
    r"coaching (individuel|de groupe)|accompagne\w*|accompagnement|suivi (personnalise|individuel|sur)|"
    r"un vrai suivi|formule|offre ou|ateliers? en|vous (proposez|faites)|s'inscrire|m'inscrire|"
    r"partante|sessions? (en direct|de questions)|paiement en plusieurs fois|"
    r"n'y arrive(rai)? pas seule|pas seule|qu'on m'aide|qu.on m.aide|monter pour moi|"
    r"gere mon|installer .* (c'est un service|vous faites)|c'est un service|aller plus loin)"
)


# Complaints about the agency or the assistant, refund requests, insults (folded text). Her
# frustration with her own tunnel or reels is not one: each cue names the agency's side.
_AT_US = r"(vous|votre|vos|ton|tes|t'es|tu es|l'agence|ce chat|ce bot|ce service|ce truc|ca)"
_COMPLAINT = {
    # A demand for her money back; a question about the refund policy is not one.
    "refund": re.compile(
        r"(\bje (veux|voudrais|souhaite|demande|exige|reclame)( [\w']+){0,2} (un |mon |le )?"
        r"rembourse|\brembourse[sz]?-moi|\bremboursez|\bme faire rembourser|"
        r"\brecuperer mon argent|\brendre mon argent|\bannuler (ma|mon) (commande|achat|"
        r"paiement)|\bchargeback|\blitige bancaire|\bfaire opposition)"
    ),
    "insult": re.compile(
        r"(\bbande d'(incapables|escrocs|nulles|nuls|voleu\w*|arnaqueu\w*)|"
        r"\b(vous etes|t'es|tu es|bande de)( vraiment| trop| completement| des)? "
        r"(nulle?s?|nuls|incompetent\w*|incapables?|inutiles?|bidon|escrocs?|voleu\w*|"
        r"arnaqueu\w*|une arnaque)\b|"
        r"\bsert a rien\b.{0,20}\b(votre|vos|ce truc|ce chat|ce bot|ce service)\b|"
        r"\b(votre|vos|ton|ce) (truc|chat|bot|service|formation|programme|accompagnement|"
        r"agence|outil|assistant|robot)( \w+)? (ne )?sert a rien\b|"
        r"\b(c'est|c'etait) (une |de l')arnaque|\bvous m'avez (arnaque|escroque|vole)\w*|"
        r"\bfoutage de gueule|\bvous (vous )?foutez|\bse fout de (moi|nous)|\bta gueule|"
        r"\bde la merde\b|\bmerdique|\b(votre|vos|ce) \w+ (est |sont )?pourri)"
    ),
    "complaint": re.compile(
        r"\b(plainte|reclamation|je (me )?plains|inadmissible|inacceptable|honteux|"
        r"scandale\w*|(pas|plus|jamais) (du tout )?satisfaite?|mecontente?|"
        r"(tres |vraiment |super )?decue? (de|par) (votre|vos|la formation|l'accompagnement|"
        r"l'agence|ce programme|cette formation|du programme|de la formation)|"
        r"(personne ne|jamais eu de|toujours pas eu de|toujours pas de) (me )?(repon\w*|retour)|"
        r"pas (du tout )?ce qui (etait|m'avait ete) promis|mauvaise experience|"
        r"n'importe quoi " + _AT_US + r"|c'est du vol)"
    ),
}


def complaint(text: str) -> str:
    """Which kind of complaint the message is ("refund", "insult", "complaint"), or ""."""
    folded = fold(text).replace("’", "'")
    for kind, pattern in _COMPLAINT.items():
        if pattern.search(folded):
            return kind
    return ""


# A question about the agency's prices or offers is always an upsell moment.
_PRICE = re.compile(
    r"\b(tarifs?|combien (coute|coutent|ca coute)|coute combien|prix (de|du|des) "
    r"(votre|vos|l'accompagnement|la formation|l'audit|du programme|des formations|"
    r"l'offre|vos offres)|vos (offres|formules|accompagnements))"
)
UPSELL_PROBABILITY = 0.5


@dataclass
class Analysis:
    sentiment: str  # positive | neutral | negative
    upsell: bool
    loop: bool
    loop_similarity: float = 0.0
    upsell_reason: str = ""
    complaint: str = ""  # refund | insult | complaint, when the message is one

    def public(self) -> dict:
        return {"sentiment": self.sentiment, "upsell": self.upsell, "loop": self.loop}


def sentiment(text: str) -> str:
    """positive, neutral or negative, from French cues (negation, emojis, punctuation)."""
    folded = fold(text)
    score = 0.0
    for cue, pattern, weight in _POSITIVE_CUES:
        if cue not in folded:
            continue
        for match in pattern.finditer(folded):
            before = folded[max(0, match.start() - 12) : match.start()]
            score += -weight if _NEGATION.search(before) and cue not in ("merci",) else weight
    for cue, pattern, weight in _NEGATIVE_CUES:
        if cue in folded and pattern.search(folded):
            score -= weight
    score += 0.75 * sum(text.count(e) for e in _EMOJI_POSITIVE)
    if "!!" in text and score > 0:
        score += 0.5
    if "???" in text or "!!" in text and score < 0:
        score -= 0.5
    if score >= 1.0:
        return "positive"
    if score <= -1.0:
        return "negative"
    return "neutral"


def upsell_trigger(text: str, deep_questions: int = 0) -> str:
    """Why this message signals buying intent or a need for deeper help ("" when it does not)."""
    match = _UPSELL.search(fold(text))
    if match:
        return match.group(0)
    if deep_questions >= DEEP_QUESTIONS:
        return "questions approfondies répétées"
    return ""


def loop_similarity(vector: np.ndarray, previous: list[np.ndarray]) -> float:
    """The highest similarity between this message and the visitor's recent messages."""
    if not previous:
        return 0.0
    return float(max(float(vector @ p) for p in previous))


def detect_loop(message: str, vector: np.ndarray, previous: list[np.ndarray]) -> tuple[bool, float]:
    """The visitor asks the same thing again (or repeats the same complaint), or her earlier
    messages already asked one thing twice and this one comes back to it."""
    if not previous:
        return False, 0.0
    best = loop_similarity(vector, previous)
    if best >= LOOP_ECHO and _repeated(previous) and sentiment(message) != "positive":
        return True, best  # (thanks on the same topic close a loop, they do not extend it)
    folded = fold(message)
    asking = "?" in message or sentiment(message) == "negative" or bool(_REPEAT.search(folded))
    if not asking:
        return False, best
    threshold = LOOP_WITH_MARKER if _REPEAT.search(folded) else LOOP_SIMILARITY
    return best >= threshold, best


def _repeated(previous: list[np.ndarray]) -> bool:
    """Two of her earlier messages ask the same thing."""
    return any(
        float(previous[i] @ previous[j]) >= LOOP_HISTORY
        for i in range(len(previous))
        for j in range(i + 1, len(previous))
    )


def deep_questions(earlier: list[str]) -> int:
    """How many of the visitor's earlier messages were long, real questions."""
    return sum(1 for text in earlier if "?" in text and len(text.split()) >= 10)


def analyze(
    message: str,
    vector: np.ndarray,
    previous: list[np.ndarray],
    *,
    earlier: list[str] | None = None,
    sentiment_hint: str | None = None,
    upsell_hint: bool | None = None,
) -> Analysis:
    """All the signals of one visitor message; the orchestrator's hints, when any, are combined.

    `previous` are the embeddings of the visitor's recent messages, `earlier` their texts.
    """
    loop, similarity = detect_loop(message, vector, previous)
    grievance = complaint(message)
    if grievance:
        # A complaint, a refund or an insult: negative, and never a moment to sell.
        return Analysis("negative", False, loop, round(similarity, 4), "", grievance)
    model = default_model()
    learnt = model is not None and model.applies_to(vector)
    mood = model.sentiment(message, vector)[0] if learnt else sentiment(message)
    if sentiment_hint in ("positive", "negative") and mood == "neutral":
        mood = sentiment_hint  # the orchestrator saw what we missed
    reason = upsell_trigger(message)
    if learnt:
        intent = model.upsell(message, vector) >= UPSELL_PROBABILITY
        if intent and not reason:
            reason = "intention d'achat ou besoin d'accompagnement"
        elif not intent and not _PRICE.search(fold(message)):
            reason = ""  # a cue the model overruled (a question about her own prices...)
    if not reason and "?" in message and deep_questions(earlier or []) >= DEEP_QUESTIONS:
        reason = "questions approfondies répétées"
    upsell = bool(reason) or bool(upsell_hint)
    if upsell_hint and not reason:
        reason = "signal de l'orchestrateur"
    return Analysis(mood, upsell, loop, round(similarity, 4), reason)


# Formatting -----------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_HTML_TAG = re.compile(r"</?\s*[a-zA-Z][^>]*>")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)[^)]*\)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")


def _safe_link(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    if re.match(r"^(https?://|mailto:)", url, re.I):
        return f"[{label}]({url})"
    return label  # javascript:, data:, relative tricks: keep only the words


def safe_markdown(text: str) -> str:
    """Markdown the widget can render safely: no raw HTML, no images, only http(s)/mailto links."""
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _HTML_TAG.sub("", text)
    text = text.replace("<", "‹").replace(">", "›") if "<" in text else text
    text = _LINK.sub(_safe_link, text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def cut_to_words(text: str, max_words: int, slack: float = 0.1) -> str:
    """Cut at the last sentence end before `max_words` (+ a little slack); never mid-sentence."""
    if len(text.split()) <= max_words * (1 + slack):
        return text
    pieces = re.split(r"((?<=[.!?…])\s+|\n+)", text)
    out: list[str] = []
    count = 0
    for piece in pieces:
        n = len(piece.split())
        if n and count + n > max_words * (1 + slack) and count >= max_words * 0.5:
            break
        out.append(piece)
        count += n
    result = "".join(out).rstrip()
    if len(result.split()) > max_words * (1 + slack):  # one giant sentence: cut at a word
        result = " ".join(result.split()[:max_words]).rstrip(",;:") + "…"
    return result


def format_answer(text: str, max_words: int) -> str:
    """The answer as the visitor sees it: safe markdown, about `max_words` at most."""
    return cut_to_words(safe_markdown(text), max_words)

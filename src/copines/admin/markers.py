"""What an inbox card flags at a glance: an urgent request, an unhappy visitor."""

from __future__ import annotations

import re
from dataclasses import dataclass

from copines.postprocess import sentiment as read_sentiment
from copines.store.base import Message
from copines.text import fold

# Said outright, or a problem that cannot wait (a payment, lost access, something broken now).
URGENT = re.compile(
    r"\b(urgent\w*|urgence|au plus vite|asap|tout de suite|immediatement|des que possible|"
    r"aujourd'hui|ce soir|demain matin|bloquee?s?|plus acces|n'arrive plus a (me connecter|"
    r"acceder)|ne (marche|fonctionne) plus|en panne|rembourse\w*|debite\w*|preleve\w*|"
    r"paiement refuse|arnaque|mise en demeure|avocat)"
)
UNHAPPY = {"negative", "frustrated", "angry"}


@dataclass(frozen=True)
class Markers:
    urgent: bool
    negative: bool
    handoffs: int


def markers_of(question: Message | None, answer: Message | None, handoffs: int = 1) -> Markers:
    """Urgency from the visitor's words; her mood as the turn scored it (else scored now)."""
    text = question.content if question is not None else ""
    mood = None
    for message in (answer, question):
        if message is not None and isinstance(message.meta.get("sentiment"), str):
            mood = message.meta["sentiment"]
            break
    if mood is None and text:
        mood = read_sentiment(text)
    return Markers(
        urgent=bool(URGENT.search(fold(text))) or mood == "urgent",
        negative=mood in UNHAPPY,
        handoffs=max(1, handoffs),
    )

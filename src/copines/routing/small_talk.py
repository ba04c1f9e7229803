"""The assistant's replies to small talk: short, warm, in French with "tu", inviting the question."""

from __future__ import annotations

import re

from copines.experts import Expert
from copines.text import fold

# The assistant's avatar colour (white initials on it: 8.6:1); her name is a setting.
ASSISTANT_COLOR = "#5B4B8A"

_BOT = re.compile(
    r"\b(robot|bot|ia|intelligence artificielle|chatgpt|humaine?|vraie?|qui es.?tu)\b"
)
_THANKS = re.compile(r"\b(merci\w*|remercie|top|super|genial|parfait|nickel|cool)\b")
_BYE = re.compile(
    r"\b(au revoir|a bientot|a plus|bonne (journee|soiree|nuit|fin)|bye|ciao|a demain)\b"
)


def reply(message: str, experts: dict[str, Expert]) -> str:
    """A reply to a greeting, thanks, a goodbye or a question about the assistant."""
    folded = fold(message)
    names = (
        " et ".join(f"{e.name} ({e.title.lower()})" for e in list(experts.values())[:3])
        or "nos expertes"
    )
    if _BOT.search(folded):
        return (
            "Je suis l'assistante virtuelle de L'Agence des Copines 🤖 : je ne suis pas une "
            f"personne, mais je te mets en lien avec {names}, et avec l'équipe humaine si "
            "besoin. Quelle est ta question ?"
        )
    if _BYE.search(folded):
        return (
            "Avec plaisir, à très vite ! Si une question te revient sur tes tunnels, tes emails, "
            "ton contenu ou Instagram, écris-la ici. ✨"
        )
    if _THANKS.search(folded):
        return (
            "Avec plaisir ! 😊 Si tu as une autre question, sur tes automatisations, tes emails, "
            "ton contenu ou Instagram, écris-la-moi : je la confie à la bonne experte."
        )
    return (
        "Bonjour et bienvenue ! 👋 Je suis l'assistante de L'Agence des Copines. Dis-moi ce qui "
        f"t'amène : ta question ira à {names}. Qu'est-ce que tu aimerais savoir ?"
    )

"""Small text helpers shared by ingestion, retrieval and post-processing."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z0-9]+)?")

# Common French (and a few English) words that carry no topic.
STOPWORDS = frozenset(
    """
    a ai aie aient aies ait al alors as au aucun aucune aupres aura aurai auraient aurais aurait
    auras aurez auriez aurions aurons auront aussi autre autres aux avaient avais avait avant avec
    avez aviez avions avoir avons ayant ayez ayons bah bien bon c ca car ce ceci cela celle celles
    celui cependant ces cet cette ceux chaque chez ci comme comment d dans de des deja depuis devrait
    dire dois doit donc dont du e elle elles en encore es est et etaient etais etait etant ete etes
    etiez etions etre eu eue eues eumes eurent eus eusse eussent eusses eussiez eussions eut eutes
    eux faire fais fait faut fois font fut ici il ils j je jusqu l la le les leur leurs lui m ma
    mais me meme memes mes moi mon n na ne ni nos notre nous on ont ou où par pas peu peut peux plus
    pour pourquoi pourrais pourrait puis qu quand que quel quelle quelles quels qui quoi s sa sans
    se sera serai seraient serais serait seras serez seriez serions serons seront ses si sien soi
    soient sois soit sommes son sont sous soyez soyons suis sur t ta te tes toi ton tous tout toute
    toutes tres tu un une unes uns v va vais veux vos votre vous vu y
    bonjour salut merci svp stp hello coucou oui non ok okay voila alors
    the and or of to in is it for on with what how
    """.split()
)


def fold(text: str) -> str:
    """Lowercase and strip accents ("Étape" -> "etape")."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """Folded word tokens of a text, elisions split off ("l'email" -> "email")."""
    out = []
    for token in _WORD.findall(fold(text)):
        if "'" in token or "’" in token:
            token = re.split(r"['’]", token)[-1]
        out.append(token)
    return out


def keywords(text: str, limit: int | None = None) -> list[str]:
    """Topic words of a text: folded, no stopwords, no 1-2 letter tokens, most frequent first."""
    counts: dict[str, int] = {}
    for token in words(text):
        if len(token) > 2 and token not in STOPWORDS and not token.isdigit():
            counts[token] = counts.get(token, 0) + 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    return ranked[:limit] if limit else ranked


def stem(token: str) -> str:
    """A light French stem for keyword matching: plural marks off, long words cut."""
    if len(token) > 4 and token[-1] in "sx":
        token = token[:-1]
    return token[:8] if len(token) > 8 else token


def search_terms(query: str, limit: int = 10) -> list[str]:
    """The stems worth searching for in a visitor's question."""
    return list(_search_terms(query, limit))


@lru_cache(maxsize=4096)
def _search_terms(query: str, limit: int) -> tuple[str, ...]:
    # Cached: a turn asks for the same question's terms in the keyword search and the reranker.
    out: list[str] = []
    for word in keywords(query):
        s = stem(word)
        if s not in out:
            out.append(s)
    return tuple(out[:limit])


def initials_of(name: str) -> str:
    """Two capitals for an avatar: the first letters of the first two words."""
    words = [w for w in re.split(r"[\s'’-]+", name) if w]
    if len(words) >= 2:
        return (words[0][0] + words[1][0]).upper()
    return name[:2].upper() or "?"

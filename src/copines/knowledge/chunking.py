"""Structure-aware chunking: by heading, then paragraph, then sentence, with a small overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from copines.store.base import ChunkRecord
from copines.text import fold, keywords

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[A-ZÀ-ÖØ-Þ0-9«\"'(\-•*])")


@dataclass
class Section:
    path: list[str]
    level: int
    blocks: list[str] = field(default_factory=list)  # paragraphs (and sub-heading lines)

    @property
    def words(self) -> int:
        return sum(len(b.split()) for b in self.blocks)


def _sections(text: str, title: str) -> list[Section]:
    """Split Markdown into sections, each with its heading path and paragraphs."""
    sections: list[Section] = [Section([title] if title else [], 0)]
    stack: list[tuple[int, str]] = []
    paragraph: list[str] = []
    in_fence = False
    opened = False  # a heading was read

    def flush() -> None:
        if paragraph:
            block = "\n".join(paragraph).strip()
            if block:
                sections[-1].blocks.append(block)
            paragraph.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            paragraph.append(line)
            continue
        match = None if in_fence else HEADING.match(stripped)
        if match and title and match.group(1) == "#" and not opened and not paragraph:
            # The document's own first line ("# Its title", under a front matter title):
            # the title already heads every path.
            opened = True
            flush()
            continue
        if match:
            opened = True
            flush()
            level, heading = len(match.group(1)), match.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            path = [h for _, h in stack]
            if title and (not path or path[0] != title) and level > 1:
                path = [title, *path]
            sections.append(Section(path, level))
        elif not stripped and not in_fence:
            flush()
        else:
            paragraph.append(line.rstrip())
    flush()
    return [s for s in sections if s.blocks]


def _sentences(block: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(block) if s.strip()]


def _split_long(block: str, max_words: int) -> list[str]:
    """Cut a too-long paragraph at sentence (then word) boundaries."""
    pieces: list[str] = []
    current: list[str] = []
    count = 0
    for sentence in _sentences(block):
        n = len(sentence.split())
        if n > max_words:  # a run-on "sentence": cut by words
            w = sentence.split()
            for i in range(0, len(w), max_words):
                pieces.append(" ".join(w[i : i + max_words]))
            continue
        if count + n > max_words and current:
            pieces.append(" ".join(current))
            current, count = [], 0
        current.append(sentence)
        count += n
    if current:
        pieces.append(" ".join(current))
    return pieces


def _tail(text: str, overlap_words: int) -> str:
    """The last sentence(s) of a chunk, at most `overlap_words` words, to open the next one."""
    sentences = _sentences(text.replace("\n", " "))
    tail: list[str] = []
    count = 0
    for sentence in reversed(sentences):
        n = len(sentence.split())
        if count + n > overlap_words:
            break
        tail.insert(0, sentence)
        count += n
    return " ".join(tail)


_DEFINITION = re.compile(r"^\s*[-*+]\s+(\*\*)?[^:\n*]{1,40}?(\*\*)?\s*:\s+\S")
MIN_ENTRIES = 6


def _entries(block: str) -> list[str] | None:
    """The entries of a definition list ("- Term : what it means", six or more), else None."""
    lines = [line for line in block.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if _DEFINITION.match(line)]
    if len(starts) < MIN_ENTRIES or len(starts) < 0.8 * len(lines) or starts[0] != 0:
        return None
    bounds = [*starts, len(lines)]
    return ["\n".join(lines[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def _common_path(a: list[str], b: list[str]) -> list[str]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


def chunk_document(
    text: str,
    title: str,
    *,
    target_words: int = 150,
    max_words: int = 230,
    overlap_words: int = 30,
    min_words: int = 60,
) -> list[ChunkRecord]:
    """Cut a Markdown document into passages that each keep their heading path.

    Small neighbouring sections are merged (their sub-headings kept as lines of
    text, the path cut to what they share); long ones are packed paragraph by
    paragraph up to `target_words`, and a continued section repeats the last
    sentence of its previous chunk.
    """
    units: list[tuple[list[str], str]] = []  # (path, block)
    alone: set[int] = set()  # units that stay chunks of their own (glossary entries)
    for section in _sections(text, title):
        for block in section.blocks:
            entries = _entries(block)
            if entries:
                for entry in entries:
                    alone.add(len(units))
                    units.append((section.path, entry))
            elif len(block.split()) > max_words:
                units.extend((section.path, piece) for piece in _split_long(block, max_words))
            else:
                units.append((section.path, block))

    chunks: list[tuple[list[str], list[str]]] = []  # (path, blocks)
    current_path: list[str] | None = None
    current: list[str] = []
    count = 0
    for index, (path, block) in enumerate(units):
        n = len(block.split())
        if index in alone or index - 1 in alone:
            # An entry of a glossary-like list is a passage by itself: its vector then means
            # that term, not the blur of twenty definitions.
            if current_path is not None and current:
                chunks.append((current_path, current))
            current_path, current, count = path, [block], n
            continue
        if current_path is None:
            current_path, current, count = path, [block], n
            continue
        same = path == current_path
        if same and count + n <= target_words:
            current.append(block)
            count += n
            continue
        common = _common_path(path, current_path)
        if not same and count < min_words and count + n <= max_words and common:
            # A short section joins the next one; both keep their headings as text lines.
            if len(current_path) > len(common) and not current[0].startswith("#"):
                current[0] = f"{'#' * min(6, len(current_path))} {current_path[-1]}\n{current[0]}"
            if len(path) > len(common):
                block = f"{'#' * min(6, len(path))} {path[-1]}\n{block}"
            current_path = common
            current.append(block)
            count += n
            continue
        chunks.append((current_path, current))
        overlap = _tail(current[-1], overlap_words) if same else ""
        current_path = path
        current = [overlap, block] if overlap and overlap != block else [block]
        count = n + (len(overlap.split()) if overlap else 0)
    if current_path is not None and current:
        chunks.append((current_path, current))

    records = []
    for position, (path, blocks) in enumerate(chunks):
        body = "\n\n".join(b for b in blocks if b).strip()
        if not body:
            continue
        records.append(
            ChunkRecord(
                position=position,
                text=body,
                heading_path=" > ".join(path),
                keywords=keywords(" ".join(path) + " " + body, limit=12),
            )
        )
    for i, record in enumerate(records):
        record.position = i
    return records


# Reading a passage back as structure ---------------------------------------------------
# Headings of sections that list what NOT to do: their lines are pitfalls, never advice.
# "Comment éviter X" is advice about avoiding X, so plain "éviter" is not enough.
_PITFALL = re.compile(
    r"(\ba eviter\b|\bfaut eviter\b|\berreurs?\b|\bpieges?\b|\bne (pas|jamais) faire\b|"
    r"\bne faut (pas|jamais)\b|\ba ne (pas|jamais) faire\b|\ba proscrire\b|"
    r"\bfaux pas\b|\bfausses? bonnes? idees?\b|\bmauvaises? pratiques?\b|\bidees? recues?\b|"
    r"\bmythes?\b|\becueils?\b|\bmistakes?\b|\bpitfalls?\b|\bdon'?ts\b|\bwhat not to do\b|"
    r"\banti-?patterns?\b)"
)
# Notes written for the team, not for visitors.
_INTERNAL = re.compile(
    r"(\bnotes? internes?\b|\busage interne\b|\btodo\b|\bfixme\b|\bne pas diffuser\b|"
    r"\bpour l'equipe uniquement\b|\ba verifier par l'equipe\b|^\s*\[?interne\]?\s*:)"
)
_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+(?:\[[ xX]?\]\s*)?")
_CHECKBOX = re.compile(r"^\s*(?:[-*+•]\s+)?\[[ xX]?\]\s*")


def is_pitfall_heading(heading: str) -> bool:
    """A heading of "mistakes", "à éviter", "erreurs", "pièges"... (its lines are not advice)."""
    return bool(_PITFALL.search(fold(heading)))


def is_internal(text: str) -> bool:
    """A note for the team ("Note interne", "TODO") rather than for a visitor."""
    return bool(_INTERNAL.search(fold(text)))


@dataclass
class Unit:
    """One paragraph or list item of a passage, with the section it sits in."""

    text: str  # markup stripped (list marks, checkboxes, bold)
    heading: str  # the nearest heading above it
    kind: str  # "para" | "item"
    group: int  # consecutive items share a group; a paragraph has its own
    pitfall: bool = False  # under a "mistakes / à éviter" heading
    internal: bool = False  # a note for the team
    ordered: bool = False  # an item of a numbered list (steps)
    nested: bool = False  # an item indented under another one

    @property
    def lead_in(self) -> bool:
        """Announces what follows ("Elle contient :")."""
        return self.text.rstrip().endswith(":")


def _clean(text: str) -> str:
    text = _CHECKBOX.sub("", text)
    text = _ITEM.sub("", text)
    text = text.replace("**", "").replace("__", "").replace("`", "")
    return " ".join(text.split()).strip()


def passage_units(text: str, heading_path: str) -> list[Unit]:
    """A passage read back as paragraphs and list items under their headings.

    The passage's heading path gives the first heading; headings merged into its text (small
    sections joined by `chunk_document`) open new ones. A unit is a pitfall when any heading
    above it is one, internal when it or its heading is a note for the team. Table rows are
    items ("Clique dans un email : +5").
    """
    path = [h.strip() for h in heading_path.split(" > ") if h.strip()]
    reader = _Reader(path)
    for block in re.split(r"\n\s*\n", text):
        reader.block([line for line in block.splitlines() if line.strip()])
    base_pitfall = any(is_pitfall_heading(h) for h in path[1:])
    base_internal = any(is_internal(h) for h in path[1:])
    for unit in reader.units:
        unit.pitfall = unit.pitfall or base_pitfall
        unit.internal = unit.internal or base_internal
    return [u for u in reader.units if u.text]


class _Reader:
    """The state of `passage_units` while it reads a passage's lines."""

    def __init__(self, path: list[str]):
        self.path = path
        self.stack: list[tuple[int, str, bool, bool]] = []  # (level, heading, pitfall, internal)
        self.units: list[Unit] = []
        self.group = 0
        self.in_list = False
        self.paragraph: list[str] = []
        self.table_header: list[str] = []

    def block(self, lines: list[str]) -> None:
        self.table_header = []
        for line in lines:
            heading = HEADING.match(line.strip())
            if line.lstrip().startswith("|"):
                self.table_line(line)
            elif heading:
                self.flush()
                level, title = len(heading.group(1)), heading.group(2).strip()
                while self.stack and self.stack[-1][0] >= level:
                    self.stack.pop()
                self.stack.append((level, title, is_pitfall_heading(title), is_internal(title)))
                self.in_list = False
            elif _ITEM.match(line) or _CHECKBOX.match(line):
                self.item(line)
            elif self.in_list and line.startswith((" ", "\t")) and self.units:
                self.units[-1].text += " " + _clean(line)  # an item's continued line
            else:
                self.paragraph.append(line.strip())
        self.flush()
        self.in_list = False

    def flush(self) -> None:
        if self.paragraph:
            self.group += 1
            self.units.append(self.unit(" ".join(self.paragraph), "para"))
            self.paragraph = []
            self.in_list = False

    def item(self, line: str) -> None:
        self.flush()
        if not self.in_list:
            self.group += 1
        self.units.append(self.unit(line, "item"))
        self.in_list = True

    def table_line(self, line: str) -> None:
        self.flush()
        row = _table_row(line, self.table_header)
        if row is None:
            return
        if not self.table_header:
            self.table_header = _cells(line)
            return
        self.item(row)

    def unit(self, raw: str, kind: str) -> Unit:
        stack = self.stack
        heading = stack[-1][1] if stack else (self.path[-1] if self.path else "")
        return Unit(
            text=_clean(raw),
            heading=heading,
            kind=kind,
            group=self.group,
            pitfall=any(s[2] for s in stack),
            internal=any(s[3] for s in stack) or is_internal(raw),
            ordered=kind == "item" and bool(re.match(r"^\s*\d+[.)]\s", raw)),
            nested=kind == "item" and raw.startswith(("  ", "\t")),
        )


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_row(line: str, header: list[str]) -> str | None:
    """A table row as one line ("Clique dans un email : +5"); None for the separator row."""
    cells = _cells(line)
    if all(re.fullmatch(r":?-{2,}:?", c) or not c for c in cells):
        return None
    if not header:
        return " ".join(cells)  # the header itself (kept as the columns' names)
    first, rest = cells[0], [c for c in cells[1:] if c]
    return f"{first} : {', '.join(rest)}" if rest else first


def mark_pitfalls(text: str, heading_path: str, label: str = "À éviter : ") -> str:
    """The passage as written, each line under a "mistakes / à éviter" heading labelled with
    `label` and the notes meant for the team left out (what a model may quote)."""
    path = [h.strip() for h in heading_path.split(" > ") if h.strip()]
    base = any(is_pitfall_heading(h) for h in path[1:])
    stack: list[tuple[int, bool, bool]] = []  # (level, pitfall, internal)
    out: list[str] = []
    for line in text.splitlines():
        heading = HEADING.match(line.strip())
        if heading:
            level, title = len(heading.group(1)), heading.group(2)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, is_pitfall_heading(title), is_internal(title)))
            if not stack[-1][2]:
                out.append(line)
            continue
        if any(s[2] for s in stack) or (line.strip() and is_internal(line)):
            continue
        if line.strip() and (base or any(s[1] for s in stack)):
            marker = _ITEM.match(line) or _CHECKBOX.match(line)
            start = marker.end() if marker else len(line) - len(line.lstrip())
            line = f"{line[:start]}{label}{line[start:]}"
        out.append(line)
    return "\n".join(out)

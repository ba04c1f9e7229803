"""Structure-aware chunking: by heading, then paragraph, then sentence, with a small overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from copines.store.base import ChunkRecord
from copines.text import keywords

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
        if match:
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
    for section in _sections(text, title):
        for block in section.blocks:
            if len(block.split()) > max_words:
                units.extend((section.path, piece) for piece in _split_long(block, max_words))
            else:
                units.append((section.path, block))

    chunks: list[tuple[list[str], list[str]]] = []  # (path, blocks)
    current_path: list[str] | None = None
    current: list[str] = []
    count = 0
    for path, block in units:
        n = len(block.split())
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

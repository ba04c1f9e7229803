"""Read md, txt, html, pdf and docx files into Markdown-flavoured text."""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from copines.errors import InputError

SUPPORTED = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx"}


@dataclass
class LoadedDocument:
    title: str
    text: str  # Markdown: '#' headings, blank lines between paragraphs
    url: str | None = None  # the public page of the document, when its front matter names one
    owner: str | None = None  # the owner its front matter declares, if any


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)


def split_front_matter(text: str) -> tuple[dict[str, object], str]:
    """A leading YAML block (between `---` lines) read as a mapping, and the text after it.

    A block that is not a YAML mapping is left in the text, as written.
    """
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, text
    if not isinstance(meta, dict):
        return {}, text
    return meta, text[match.end() :]


def _public_url(value: object) -> str | None:
    """An http(s) address, or None (anything else is not a page a visitor can open)."""
    if isinstance(value, str) and re.match(r"^https?://[^\s<>\"']+$", value.strip(), re.I):
        return value.strip()
    return None


def _with_front_matter(text: str, path: Path, title_from_text: bool) -> LoadedDocument:
    meta, body = split_front_matter(text)
    title = meta.get("title")
    if not isinstance(title, str) or not title.strip():
        title = (
            _title_from(body, _fallback_title(path)) if title_from_text else _fallback_title(path)
        )
    owner = meta.get("owner")
    return LoadedDocument(
        title.strip(),
        body,
        url=_public_url(meta.get("url")),
        owner=owner.strip().lower() if isinstance(owner, str) and owner.strip() else None,
    )


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (with or without BOM), UTF-16 with BOM, or Windows-1252 that reads as text.

    Raises:
        InputError: the bytes are in no encoding we can trust.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError("unknown encoding (broken UTF-16)") from exc
    if b"\x00" in data:
        raise InputError("unknown encoding (binary content)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    text = data.decode("cp1252", errors="replace")
    bad = sum(
        1
        for ch in text
        if ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\t\r\n\f")
    )
    letters = sum(1 for ch in text if ch.isalpha())
    # French in Windows-1252 is mostly ASCII with a few accented letters; noise is not.
    high = sum(1 for byte in data if byte >= 0x80)
    visible = max(1, len(text.replace(" ", "").replace("\n", "")))
    if bad == 0 and letters >= 0.5 * visible and high <= 0.3 * len(data):
        return text
    raise InputError("unknown encoding (neither UTF-8 nor readable Windows-1252)")


def _title_from(text: str, fallback: str) -> str:
    for line in text.splitlines():
        match = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            return match.group(1).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:120]
    return fallback


def _fallback_title(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip().capitalize() or path.name


def load_markdown(data: bytes, path: Path) -> LoadedDocument:
    text = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    return _with_front_matter(text, path, title_from_text=True)


def load_text(data: bytes, path: Path) -> LoadedDocument:
    text = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    return _with_front_matter(text, path, title_from_text=False)


def load_html(data: bytes, path: Path) -> LoadedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data), "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "header", "noscript", "svg", "form"]):
        tag.decompose()
    blocks: list[str] = []
    for el in soup.find_all(
        ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td"]
    ):
        if el.find_parent(["li", "blockquote", "td"]) is not None and el.name in {"p", "li"}:
            continue  # its text is part of the enclosing block
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name.startswith("h"):
            blocks.append("#" * int(el.name[1]) + " " + text)
        elif el.name == "li":
            blocks.append("- " + text)
        else:
            blocks.append(text)
    title_tag = soup.find("title")
    body = "\n\n".join(blocks)
    title = title_tag.get_text(strip=True) if title_tag and title_tag.get_text(strip=True) else ""
    return LoadedDocument(title or _title_from(body, _fallback_title(path)), body)


@dataclass
class _PdfLine:
    text: str
    size: float
    y: float


def _pdf_lines(page: object) -> list[_PdfLine]:
    """A page's text lines with their font size and height, from pypdf's text visitor."""
    lines: list[_PdfLine] = []
    parts: list[str] = []
    state = {"size": 0.0, "y": None}

    def flush() -> None:
        text = " ".join("".join(parts).split())
        if text:
            lines.append(_PdfLine(text, state["size"], state["y"] or 0.0))
        parts.clear()
        state["size"], state["y"] = 0.0, None

    def visit(text: str, cm: list, tm: list, _font: object, size: float) -> None:
        y = round(float(tm[5]) * float(cm[3] or 1) + float(cm[5]), 1)
        scale = abs(float(tm[3]) * float(cm[3] or 1)) or 1.0
        if state["y"] is not None and text.strip() and abs(y - state["y"]) > 0.5 and y != 0:
            flush()
        for i, piece in enumerate(text.split("\n")):
            if i:
                flush()
            if piece.strip():
                state["size"] = max(state["size"], float(size) * scale)
                if state["y"] is None and (y or not lines):
                    state["y"] = y
            parts.append(piece)

    page.extract_text(visitor_text=visit)  # type: ignore[attr-defined]
    flush()
    return lines


def _pdf_markdown(pages: list[list[_PdfLine]]) -> str:
    """Rebuild headings (lines set larger than the body text) and paragraphs."""
    weight: dict[float, int] = {}
    for line in (line for page in pages for line in page):
        weight[round(line.size, 1)] = weight.get(round(line.size, 1), 0) + len(line.text)
    if not weight:
        return ""
    body = max(weight, key=lambda size: weight[size])
    heading_sizes = sorted(
        {round(line.size, 1) for page in pages for line in page if line.size >= body * 1.15},
        reverse=True,
    )[:5]
    blocks: list[str] = []
    for page in pages:
        paragraph: list[str] = []
        steps = sorted(
            abs(a.y - b.y)
            for a, b in zip(page, page[1:], strict=False)
            if round(a.size, 1) == body and round(b.size, 1) == body and a.y != b.y
        )
        step = steps[len(steps) // 2] if steps else 0.0
        previous: _PdfLine | None = None
        for line in page:
            size = round(line.size, 1)
            if size in heading_sizes and len(line.text) <= 150:
                if paragraph:
                    blocks.append(" ".join(paragraph))
                    paragraph = []
                level = heading_sizes.index(size) + 1
                continued = (  # a heading set on two lines
                    blocks
                    and blocks[-1].startswith("#" * level + " ")
                    and previous is not None
                    and round(previous.size, 1) == size
                )
                if continued:
                    blocks[-1] += " " + line.text
                    previous = line
                    continue
                blocks.append("#" * level + " " + line.text)
            else:
                gap = abs(previous.y - line.y) if previous is not None else 0.0
                if paragraph and step and gap > step * 1.4:
                    blocks.append(" ".join(paragraph))
                    paragraph = []
                paragraph.append(line.text)
            previous = line
        if paragraph:
            blocks.append(" ".join(paragraph))
    return "\n\n".join(blocks)


def load_pdf(data: bytes, path: Path) -> LoadedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = list(reader.pages)
        try:
            # Headings from font sizes; paragraphs from line spacing.
            text = _pdf_markdown([_pdf_lines(page) for page in pages])
        except Exception:  # an unusual layout: fall back to plain text, page by page
            text = ""
        if not text.strip():
            plain = [page.extract_text() or "" for page in pages]
            text = "\n\n".join(page.strip() for page in plain if page.strip())
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(f"corrupt or unreadable PDF ({exc.__class__.__name__}: {exc})") from exc
    except Exception as exc:  # pypdf raises many shapes of errors on broken files
        raise InputError(f"corrupt or unreadable PDF ({exc.__class__.__name__})") from exc
    title = ""
    try:
        title = (reader.metadata.title or "") if reader.metadata else ""
    except Exception:
        title = ""
    return LoadedDocument(title.strip() or _title_from(text, _fallback_title(path)), text)


def load_docx(data: bytes, path: Path) -> LoadedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise InputError(f"corrupt or unreadable DOCX ({exc.__class__.__name__})") from exc
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise InputError(f"corrupt or unreadable DOCX ({exc.__class__.__name__})") from exc
    blocks: list[str] = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        style = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
        level = re.match(r"(?:heading|titre)\s*(\d)", style)
        if style == "title":
            blocks.append("# " + text)
        elif level:
            blocks.append("#" * min(6, int(level.group(1)) + 1) + " " + text)
        elif "list" in style:
            blocks.append("- " + text)
        else:
            blocks.append(text)
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                blocks.append(" | ".join(cells))
    body = "\n\n".join(blocks)
    title = (document.core_properties.title or "").strip()
    return LoadedDocument(title or _title_from(body, _fallback_title(path)), body)


LOADERS = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}


def load_document(path: Path, data: bytes) -> LoadedDocument:
    """Parse one file's bytes.

    Raises:
        InputError: unsupported type, empty, corrupt, or in an unknown encoding.
    """
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise InputError(f"unsupported file type '{path.suffix or path.name}'")
    if not data.strip():
        raise InputError("empty file")
    loaded = loader(data, path)
    if not loaded.text.strip():
        raise InputError("no text found in it")
    return loaded

"""The store interface: the handful of async methods ingestion, retrieval and the turn need."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

# Closed console sessions live in the `meta` table under this prefix (one row each); the
# range [REVOKED_PREFIX, REVOKED_END) selects them through the primary key.
REVOKED_PREFIX, REVOKED_END = "admin_revoked:", "admin_revoked;"
LEASE_PREFIX = "lease:"  # meta rows "lease:<name>" = "<expiry, epoch seconds, 0-padded>|<holder>"


def lease_value(expires: float, holder: str) -> str:
    """A lease as stored: its expiry first, padded, so that text order is time order."""
    return f"{expires:017.3f}|{holder}"


@dataclass
class DocumentRecord:
    """A document of a knowledge base; `owner` is an expert id or 'shared'."""

    filename: str
    title: str
    owner: str
    content_hash: str
    owner_reason: str = ""
    tags: list[str] = field(default_factory=list)
    category: str | None = None
    priority: int = 1
    source_path: str | None = None
    url: str | None = None  # the document's public page, shown to visitors with its title
    id: int | None = None
    chunks: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class SourceRecord:
    """A place the knowledge is read from and kept in sync with: a site, a Drive folder, a
    Notion database. `kind`: page | sitemap | crawl | drive | notion."""

    name: str
    kind: str
    target: str  # a URL, a Drive folder id, a Notion database or page id, or "search"
    owner: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)  # prefix, max_pages, ...
    origin: str = "cli"  # cli | file (sources.yaml) | console
    id: int | None = None
    last_sync_at: datetime | None = None
    last_status: str = "never"  # never | ok | partial | failed
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    documents: int = 0


@dataclass
class SourceItem:
    """One document of a source with what the next sync compares against."""

    source_id: int
    key: str  # the page's URL, the Drive file id, the Notion page id
    filename: str  # the document it became
    url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    version: str | None = None  # Drive's modifiedTime, Notion's last_edited_time
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # a crawled page's links


@dataclass
class ChunkRecord:
    """One passage of a document, as stored."""

    position: int
    text: str
    heading_path: str = ""
    keywords: list[str] = field(default_factory=list)


@dataclass
class StoredChunk:
    """A chunk read back for re-embedding."""

    id: int
    text: str
    heading_path: str
    title: str


@dataclass
class Passage:
    """A retrieved chunk with its document and scores."""

    chunk_id: int
    document_id: int
    filename: str
    title: str
    owner: str
    heading_path: str
    text: str
    dense_score: float = 0.0
    keyword_rank: int | None = None
    dense_rank: int | None = None
    fused_score: float = 0.0
    score: float = 0.0
    url: str | None = None  # the document's public page, when it has one

    def embed_text(self) -> str:
        return chunk_embed_text(self.title, self.heading_path, self.text)


def chunk_embed_text(title: str, heading_path: str, text: str) -> str:
    """What gets embedded for a chunk: its context (title, headings), then its text."""
    context = heading_path or title
    return f"{context}\n\n{text}" if context else text


@dataclass
class Conversation:
    id: str
    token_hash: str
    created_at: datetime
    updated_at: datetime
    expert: str | None = None
    messages: int = 0
    email: str | None = None  # given by the visitor to be told of the team's replies


@dataclass
class Message:
    """One message of a conversation. Roles: user, assistant, team (a human of the agency)."""

    conversation_id: str
    role: str
    content: str
    id: int | None = None
    status: str = "ok"  # ok | failed
    agent: str | None = None
    confidence: float | None = None
    router: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class Escalation:
    conversation_id: str
    reason: str
    primary_need: str = ""
    brief: str = ""
    closest_expert: str | None = None
    message_id: int | None = None
    status: str = "open"  # open | handled
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    merged: bool = False  # set by `add_escalation` when it updated the conversation's open one


@dataclass
class Feedback:
    conversation_id: str
    message_id: int
    rating: int  # +1 or -1
    comment: str = ""
    id: int | None = None
    created_at: datetime | None = None


# Row mapping shared by the backends: each passes how it stores JSON and timestamps
# (SQLite: text to decode; Postgres: values the driver already decoded).
Decode = Callable[[Any], Any]
When = Callable[[Any], datetime | None]


def conversation_from_row(row: Mapping[str, Any], when: When) -> Conversation:
    return Conversation(
        id=row["id"],
        token_hash=row["token_hash"],
        expert=row["expert"],
        created_at=when(row["created_at"]),
        updated_at=when(row["updated_at"]),
        messages=row["messages"],
        email=row["email"],
    )


def message_from_row(row: Mapping[str, Any], decode: Decode, when: When) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        status=row["status"],
        agent=row["agent"],
        confidence=row["confidence"],
        router=row["router"],
        sources=decode(row["sources"]),
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=row["cost_usd"],
        timings_ms=decode(row["timings"]),
        meta=decode(row["meta"]),
        created_at=when(row["created_at"]),
    )


def escalation_from_row(row: Mapping[str, Any], decode: Decode, when: When) -> Escalation:
    return Escalation(
        id=row["id"],
        conversation_id=row["conversation_id"],
        message_id=row["message_id"],
        reason=row["reason"],
        primary_need=row["primary_need"],
        brief=row["brief"],
        closest_expert=row["closest_expert"],
        status=row["status"],
        meta=decode(row["meta"]),
        created_at=when(row["created_at"]),
        updated_at=when(row["updated_at"]),
    )


def feedback_from_row(row: Mapping[str, Any], when: When) -> Feedback:
    return Feedback(
        id=row["id"],
        conversation_id=row["conversation_id"],
        message_id=row["message_id"],
        rating=row["rating"],
        comment=row["comment"],
        created_at=when(row["created_at"]),
    )


def source_from_row(row: Mapping[str, Any], decode: Decode, when: When) -> SourceRecord:
    return SourceRecord(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        target=row["target"],
        owner=row["owner"],
        options=decode(row["options"]),
        origin=row["origin"],
        last_sync_at=when(row["last_sync_at"]),
        last_status=row["last_status"],
        counts=decode(row["counts"]),
        errors=decode(row["errors"]),
        documents=row["documents"],
    )


def source_item_from_row(row: Mapping[str, Any], decode: Decode) -> SourceItem:
    return SourceItem(
        source_id=row["source_id"],
        key=row["key"],
        filename=row["filename"],
        url=row["url"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        version=row["version"],
        content_hash=row["content_hash"],
        meta=decode(row["meta"]),
    )


class Store(ABC):
    """Persistence for knowledge and conversations. SQLite and Postgres implement it."""

    embedder_id: str | None

    # Lifecycle -----------------------------------------------------------------------
    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def ping(self) -> bool:
        """True when the database answers."""

    # Console sessions ------------------------------------------------------------------
    @abstractmethod
    async def revoke_session(self, nonce: str, expires: int) -> None:
        """Remember that the console session `nonce` was closed (until `expires`, a Unix
        time, after which its cookie is refused anyway); forget the expired ones."""

    @abstractmethod
    async def session_revoked(self, nonce: str) -> bool:
        """True when the console session `nonce` was closed before its expiry."""

    @abstractmethod
    async def meta_setdefault(self, key: str, value: str) -> str:
        """The `meta` row `key`, written with `value` first if absent (the first writer wins
        when several processes start at once)."""

    # Knowledge -----------------------------------------------------------------------
    async def register_owners(self, owners: list[str]) -> None:  # noqa: B027 - optional
        """Record the owners a document may have (the experts' ids and 'shared'), for stores
        that enforce them themselves (Postgres: a trigger refuses any other)."""

    @abstractmethod
    async def get_embedder_id(self) -> str | None:
        """Which embedder made the stored vectors (None while the store has none)."""

    @abstractmethod
    async def get_document(self, filename: str) -> DocumentRecord | None:
        """The document of that filename, with its chunk count."""

    @abstractmethod
    async def list_documents(self, owner: str | None = None) -> list[DocumentRecord]:
        """Every document (or one owner's), by filename."""

    @abstractmethod
    async def save_document(
        self,
        document: DocumentRecord,
        chunks: list[ChunkRecord],
        embeddings: np.ndarray,
        embedder_id: str,
    ) -> int:
        """Insert or replace a document and all its chunks in one transaction; returns its id.

        Raises:
            EmbedderMismatchError: the store holds vectors of another embedder.
        """

    @abstractmethod
    async def set_owner(self, filename: str, owner: str, reason: str) -> None:
        """Give a document to another owner. Raises NotFoundError."""

    @abstractmethod
    async def delete_document(self, filename: str) -> None:
        """Delete a document and its chunks. Raises NotFoundError."""

    # Sources and their sync state
    @abstractmethod
    async def save_source(self, source: SourceRecord) -> int:
        """Create or update a source by name (its sync state is kept); returns its id."""

    @abstractmethod
    async def list_sources(self) -> list[SourceRecord]:
        """Every source, by name, with its last sync and how many documents it holds."""

    @abstractmethod
    async def delete_source(self, source_id: int) -> None:
        """Forget a source and its items' state (their documents are deleted separately)."""

    @abstractmethod
    async def record_sync(
        self, source_id: int, status: str, counts: dict[str, int], errors: list[str]
    ) -> None:
        """Remember how the last sync of a source went."""

    @abstractmethod
    async def source_items(self, source_id: int) -> list[SourceItem]:
        """The documents a source made, with their sync state."""

    @abstractmethod
    async def save_source_item(self, item: SourceItem) -> None:
        """Create or update one item's sync state (by source and key)."""

    @abstractmethod
    async def delete_source_item(self, source_id: int, key: str) -> None:
        """Forget one item (its document is deleted separately)."""

    @abstractmethod
    async def claim_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or extend) the lease `name` for `seconds` unless another holder has it: one
        process at a time runs the sync. Released by `release_lease`, or when it expires."""

    @abstractmethod
    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease back (only its holder can)."""

    @abstractmethod
    async def all_chunks(self) -> list[StoredChunk]:
        """Every chunk, for re-embedding."""

    @abstractmethod
    async def replace_embeddings(
        self, ids: list[int], embeddings: np.ndarray, embedder_id: str
    ) -> None:
        """Swap every chunk's vector for one of another embedder, in one transaction."""

    @abstractmethod
    async def dense_search(
        self, expert: str, vector: np.ndarray, limit: int, threshold: float
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the expert's and shared chunks above `threshold`, best first."""

    def searches_inline(self) -> bool:
        """Whether `dense_search` and `keyword_search` run on the caller's thread without waiting
        on anything (then running them side by side gains nothing)."""
        return False

    @abstractmethod
    async def keyword_search(self, expert: str, terms: list[str], limit: int) -> list[int]:
        """Chunk ids of the expert's and shared chunks matching any term, best first."""

    @abstractmethod
    async def get_passages(
        self, expert: str, chunk_ids: list[int], vector: np.ndarray | None = None
    ) -> list[Passage]:
        """Hydrate chunk ids (owner filter applied again); `dense_score` filled from `vector`."""

    @abstractmethod
    async def count_chunks(self) -> int:
        """How many chunks the store holds."""

    # Conversations -------------------------------------------------------------------
    @abstractmethod
    async def create_conversation(self, conversation_id: str, token_hash: str) -> Conversation:
        """Start a conversation; the visitor's token is stored only as a hash."""

    @abstractmethod
    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None."""

    @abstractmethod
    async def set_conversation_expert(self, conversation_id: str, expert: str | None) -> None:
        """Remember which expert holds the conversation."""

    @abstractmethod
    async def add_message(self, message: Message) -> int:
        """Commit a message now; returns its id."""

    @abstractmethod
    async def get_messages(
        self, conversation_id: str, limit: int | None = None, after_id: int | None = None
    ) -> list[Message]:
        """A conversation's messages, oldest first (the last `limit` ones when given)."""

    @abstractmethod
    async def get_message(self, message_id: int) -> Message | None:
        """One message by id."""

    @abstractmethod
    async def update_message_meta(self, message_id: int, values: dict[str, Any]) -> None:
        """Set these keys of a message's meta, keeping the others (nothing if it is gone)."""

    @abstractmethod
    async def messages_between(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[Message]:
        """Every message created in [since, until), oldest first (for analytics)."""

    @abstractmethod
    async def list_conversations(
        self, limit: int = 50, offset: int = 0, filters: dict[str, Any] | None = None
    ) -> list[Conversation]:
        """Conversations, most recently active first."""

    @abstractmethod
    async def set_conversation_email(self, conversation_id: str, email: str | None) -> None:
        """Remember (or forget, with None) where the visitor wants the team's replies."""

    @abstractmethod
    async def conversations_by_email(self, email: str) -> list[Conversation]:
        """The conversations whose visitor left this address (case-insensitive)."""

    @abstractmethod
    async def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation with its messages, escalations and feedback; False if absent."""

    @abstractmethod
    async def purge_conversations(self, before: datetime) -> int:
        """Delete every conversation whose last activity is older than `before`; returns how
        many were deleted."""

    # Escalations and feedback --------------------------------------------------------
    @abstractmethod
    async def add_escalation(self, escalation: Escalation) -> int:
        """Record a hand-off to a human; returns its id. A conversation has at most one open
        escalation: a later hand-off updates it (reason, brief, message, meta with a count of
        `handoffs`) and sets `escalation.merged`."""

    @abstractmethod
    async def list_escalations(self, status: str | None = "open") -> list[Escalation]:
        """Escalations (of one status, or all), newest first."""

    @abstractmethod
    async def get_escalation(self, escalation_id: int) -> Escalation | None:
        """One escalation."""

    @abstractmethod
    async def set_escalation_status(self, escalation_id: int, status: str) -> None:
        """Mark an escalation open or handled. Raises NotFoundError, or InputError when
        reopening it would give its conversation a second open escalation."""

    @abstractmethod
    async def add_feedback(self, feedback: Feedback) -> int:
        """Record (or replace) the thumbs on one answer; returns its id."""

    @abstractmethod
    async def list_feedback(self, conversation_id: str | None = None) -> list[Feedback]:
        """Feedback, newest first."""


def rarest_within(counted: list[tuple[float, int, str]], budget: float) -> list[str]:
    """Keyword search's choice of words: from (rows matched, position, word), the rarest
    first while their rows fit in `budget` (the rarest one always), back in question order."""
    chosen: list[tuple[int, str]] = []
    rows = 0.0
    for n, i, word in sorted(counted):
        if chosen and rows + n > budget:
            break
        chosen.append((i, word))
        rows += n
    return [word for _, word in sorted(chosen)]

"""The conversation half of the SQLite store: conversations, messages, escalations, feedback."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from copines.errors import InputError, NotFoundError
from copines.store.base import (
    Conversation,
    Escalation,
    Feedback,
    Message,
    conversation_from_row,
    escalation_from_row,
    feedback_from_row,
    message_from_row,
)

ANOTHER_OPEN = "this conversation already has an open escalation: handle that one instead"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@contextmanager
def _conversation_needed(conversation_id: str) -> Iterator[None]:
    """A write that needs its conversation: NotFoundError once it is deleted (as when she
    deletes it while its answer is being written)."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" not in str(exc):
            raise
        raise NotFoundError(f"no conversation {conversation_id}") from exc


class SQLiteConversations:
    """Mixed into `SQLiteStore`, which provides `_run` (the connection's thread, or inline for
    one conversation's few rows) and `_tx`."""

    # Conversations -------------------------------------------------------------------
    @staticmethod
    def _conversation(row: sqlite3.Row) -> Conversation:
        return conversation_from_row(row, _dt)

    _CONV_SELECT = (
        "SELECT v.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = v.id) "
        "AS messages FROM conversations v"
    )

    async def create_conversation(self, conversation_id: str, token_hash: str) -> Conversation:
        def write(db: sqlite3.Connection) -> Conversation:
            now = _now()
            db.execute(
                "INSERT INTO conversations (id, token_hash, created_at, updated_at) "
                "VALUES (?, ?, ?, ?)",
                (conversation_id, token_hash, now, now),
            )
            return Conversation(conversation_id, token_hash, _dt(now), _dt(now))

        return await self._run(write, inline=True, write=conversation_id)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        def read(db: sqlite3.Connection) -> Conversation | None:
            row = db.execute(self._CONV_SELECT + " WHERE v.id = ?", (conversation_id,)).fetchone()
            return self._conversation(row) if row else None

        return await self._run(read, inline=True)

    async def set_conversation_expert(self, conversation_id: str, expert: str | None) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE conversations SET expert = ?, updated_at = ? WHERE id = ?",
                (expert, _now(), conversation_id),
            ),
            inline=True,
            write=conversation_id,
        )

    async def list_conversations(
        self, limit: int = 50, offset: int = 0, filters: dict[str, Any] | None = None
    ) -> list[Conversation]:
        filters = filters or {}
        where, params = [], []
        if filters.get("expert"):
            where.append("v.expert = ?")
            params.append(filters["expert"])
        if filters.get("since"):
            where.append("v.updated_at >= ?")
            params.append(filters["since"].isoformat())
        if filters.get("until"):
            where.append("v.updated_at < ?")
            params.append(filters["until"].isoformat())
        clause = (" WHERE " + " AND ".join(where)) if where else ""

        def read(db: sqlite3.Connection) -> list[Conversation]:
            rows = db.execute(
                self._CONV_SELECT + clause + " ORDER BY v.updated_at DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            return [self._conversation(r) for r in rows]

        return await self._run(read)

    async def set_conversation_email(self, conversation_id: str, email: str | None) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE conversations SET email = ? WHERE id = ?", (email, conversation_id)
            ),
            write=conversation_id,
        )

    async def conversations_by_email(self, email: str) -> list[Conversation]:
        def read(db: sqlite3.Connection) -> list[Conversation]:
            rows = db.execute(
                self._CONV_SELECT + " WHERE lower(v.email) = lower(?) ORDER BY v.updated_at DESC",
                (email.strip(),),
            ).fetchall()
            return [self._conversation(r) for r in rows]

        return await self._run(read)

    async def delete_conversation(self, conversation_id: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            # Foreign keys cascade to messages, escalations and feedback.
            cursor = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            return cursor.rowcount > 0

        return await self._run(write, write=conversation_id)

    async def purge_conversations(self, before: datetime) -> int:
        def write(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM conversations WHERE updated_at < ?",
                (before.astimezone(UTC).isoformat(timespec="microseconds"),),
            )
            return cursor.rowcount

        return await self._run(write)

    @staticmethod
    def _message(row: sqlite3.Row) -> Message:
        return message_from_row(row, json.loads, _dt)

    async def add_message(self, message: Message) -> int:
        def write(db: sqlite3.Connection) -> int:
            with self._tx(db):
                now = _now()  # once the lock is held: timestamps follow the ids
                cursor = db.execute(
                    "INSERT INTO messages (conversation_id, role, content, status, agent, "
                    "confidence, router, sources, model, prompt_tokens, completion_tokens, "
                    "cost_usd, timings, meta, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message.conversation_id,
                        message.role,
                        message.content,
                        message.status,
                        message.agent,
                        message.confidence,
                        message.router,
                        json.dumps(message.sources, ensure_ascii=False),
                        message.model,
                        message.prompt_tokens,
                        message.completion_tokens,
                        message.cost_usd,
                        json.dumps(message.timings_ms),
                        json.dumps(message.meta, ensure_ascii=False, default=str),
                        now,
                    ),
                )
                db.execute(
                    "UPDATE conversations SET updated_at = ? WHERE id = ?",
                    (now, message.conversation_id),
                )
            message.id = int(cursor.lastrowid)
            message.created_at = _dt(now)
            return message.id

        with _conversation_needed(message.conversation_id):
            return await self._run(write, inline=True, write=message.conversation_id)

    async def get_messages(
        self, conversation_id: str, limit: int | None = None, after_id: int | None = None
    ) -> list[Message]:
        def read(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? AND id > ? "
                "ORDER BY id DESC LIMIT ?",
                (conversation_id, after_id or 0, -1 if limit is None else limit),
            ).fetchall()
            return [self._message(r) for r in reversed(rows)]

        return await self._run(read, inline=True)

    async def messages_between(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[Message]:
        def read(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(
                "SELECT * FROM messages WHERE created_at >= ? AND created_at < ? ORDER BY id",
                (
                    since.astimezone(UTC).isoformat() if since else "",
                    until.astimezone(UTC).isoformat() if until else "9999",
                ),
            ).fetchall()
            return [self._message(r) for r in rows]

        return await self._run(read)

    async def get_message(self, message_id: int) -> Message | None:
        def read(db: sqlite3.Connection) -> Message | None:
            row = db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            return self._message(row) if row else None

        return await self._run(read, inline=True)

    async def update_message_meta(self, message_id: int, values: dict[str, Any]) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.execute(
                    "UPDATE messages SET meta = json_patch(meta, ?) WHERE id = ?",
                    (json.dumps(values, ensure_ascii=False, default=str), message_id),
                )

        await self._run(write)

    # Escalations and feedback --------------------------------------------------------
    @staticmethod
    def _escalation(row: sqlite3.Row) -> Escalation:
        return escalation_from_row(row, json.loads, _dt)

    async def add_escalation(self, escalation: Escalation) -> int:
        def write(db: sqlite3.Connection) -> int:
            now = _now()
            row = db.execute(
                "INSERT INTO escalations (conversation_id, message_id, reason, primary_need, "
                "brief, closest_expert, status, meta, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?) "
                "ON CONFLICT (conversation_id) WHERE status = 'open' DO UPDATE SET "
                "message_id = excluded.message_id, reason = excluded.reason, "
                "primary_need = excluded.primary_need, brief = excluded.brief, "
                "closest_expert = excluded.closest_expert, "
                "meta = json_set(excluded.meta, '$.handoffs', "
                "coalesce(json_extract(escalations.meta, '$.handoffs'), 1) + 1), "
                "updated_at = excluded.updated_at "
                "RETURNING id, created_at <> updated_at",
                (
                    escalation.conversation_id,
                    escalation.message_id,
                    escalation.reason,
                    escalation.primary_need,
                    escalation.brief,
                    escalation.closest_expert,
                    json.dumps(escalation.meta, ensure_ascii=False, default=str),
                    now,
                    now,
                ),
            ).fetchone()
            escalation.id, escalation.merged = int(row[0]), bool(row[1])
            escalation.status = "open"
            return escalation.id

        with _conversation_needed(escalation.conversation_id):
            return await self._run(write)

    async def list_escalations(self, status: str | None = "open") -> list[Escalation]:
        def read(db: sqlite3.Connection) -> list[Escalation]:
            if status is None:
                rows = db.execute("SELECT * FROM escalations ORDER BY id DESC").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM escalations WHERE status = ? ORDER BY id DESC", (status,)
                ).fetchall()
            return [self._escalation(r) for r in rows]

        return await self._run(read)

    async def get_escalation(self, escalation_id: int) -> Escalation | None:
        def read(db: sqlite3.Connection) -> Escalation | None:
            row = db.execute("SELECT * FROM escalations WHERE id = ?", (escalation_id,)).fetchone()
            return self._escalation(row) if row else None

        return await self._run(read)

    async def set_escalation_status(self, escalation_id: int, status: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            try:
                cursor = db.execute(
                    "UPDATE escalations SET status = ?, updated_at = ? WHERE id = ?",
                    (status, _now(), escalation_id),
                )
            except sqlite3.IntegrityError as exc:
                raise InputError(ANOTHER_OPEN) from exc
            if cursor.rowcount == 0:
                raise NotFoundError(f"no escalation {escalation_id}")

        await self._run(write)

    async def add_feedback(self, feedback: Feedback) -> int:
        def write(db: sqlite3.Connection) -> int:
            row = db.execute(
                "INSERT INTO feedback (conversation_id, message_id, rating, comment, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(message_id) DO UPDATE SET "
                "rating = excluded.rating, comment = excluded.comment, "
                "created_at = excluded.created_at RETURNING id",
                (
                    feedback.conversation_id,
                    feedback.message_id,
                    feedback.rating,
                    feedback.comment,
                    _now(),
                ),
            ).fetchone()
            feedback.id = int(row[0])
            return feedback.id

        return await self._run(write, inline=True, write=feedback.conversation_id)

    async def list_feedback(self, conversation_id: str | None = None) -> list[Feedback]:
        def read(db: sqlite3.Connection) -> list[Feedback]:
            sql = "SELECT * FROM feedback"
            params: tuple[Any, ...] = ()
            if conversation_id is not None:
                sql += " WHERE conversation_id = ?"
                params = (conversation_id,)
            rows = db.execute(sql + " ORDER BY id DESC", params).fetchall()
            return [feedback_from_row(r, _dt) for r in rows]

        return await self._run(read)

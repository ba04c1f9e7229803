"""Conversations, messages, escalations and feedback on Postgres (mixed into PostgresStore)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from copines.errors import InputError, NotFoundError
from copines.store.base import (
    REVOKED_END,
    REVOKED_PREFIX,
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
_dumps = partial(json.dumps, ensure_ascii=False, default=str)


@contextmanager
def _conversation_needed(conversation_id: str) -> Iterator[None]:
    """A write that needs its conversation: NotFoundError once it is deleted (as when she
    deletes it while its answer is being written)."""
    try:
        yield
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFoundError(f"no conversation {conversation_id}") from exc


def _json(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_dumps)


def _same(value: Any) -> Any:
    """JSON columns come back decoded by psycopg."""
    return value


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class ConversationsMixin:
    """The conversation half of the Postgres store; `self._conn()` comes from PostgresStore.

    Each method is one statement on an autocommit connection: one round trip, and atomic.
    """

    # Conversations -------------------------------------------------------------------
    _CONV_SELECT = (
        "SELECT v.*, (SELECT count(*) FROM copines.messages m WHERE m.conversation_id = v.id) "
        "AS messages FROM copines.conversations v"
    )

    @staticmethod
    def _conversation(row: dict[str, Any]) -> Conversation:
        return conversation_from_row(row, _utc)

    async def create_conversation(self, conversation_id: str, token_hash: str) -> Conversation:
        async with self._conn() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO copines.conversations (id, token_hash) VALUES (%s, %s) "
                    "RETURNING *, 0 AS messages",
                    (conversation_id, token_hash),
                )
            ).fetchone()
        return self._conversation(row)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        async with self._conn() as conn:
            row = await (
                await conn.execute(self._CONV_SELECT + " WHERE v.id = %s", (conversation_id,))
            ).fetchone()
        return self._conversation(row) if row else None

    # Console sessions (rows of copines.meta) ---------------------------------------------
    async def revoke_session(self, nonce: str, expires: int) -> None:
        async with self._conn() as conn:
            # One statement (autocommit): forget the expired ones, remember this one.
            await conn.execute(
                "WITH gone AS (DELETE FROM copines.meta WHERE key >= %s AND key < %s "
                "AND value::bigint < extract(epoch FROM now())) "
                "INSERT INTO copines.meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (REVOKED_PREFIX, REVOKED_END, REVOKED_PREFIX + nonce, str(int(expires))),
            )

    async def session_revoked(self, nonce: str) -> bool:
        async with self._conn() as conn:
            row = await (
                await conn.execute(
                    "SELECT 1 AS revoked FROM copines.meta WHERE key = %s",
                    (REVOKED_PREFIX + nonce,),
                )
            ).fetchone()
        return row is not None

    async def meta_setdefault(self, key: str, value: str) -> str:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO copines.meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, value),
            )
            row = await (
                await conn.execute("SELECT value FROM copines.meta WHERE key = %s", (key,))
            ).fetchone()
        return row["value"]

    async def set_conversation_expert(self, conversation_id: str, expert: str | None) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE copines.conversations SET expert = %s, updated_at = clock_timestamp() "
                "WHERE id = %s",
                (expert, conversation_id),
            )

    async def list_conversations(
        self, limit: int = 50, offset: int = 0, filters: dict[str, Any] | None = None
    ) -> list[Conversation]:
        filters = filters or {}
        where, params = [], []
        if filters.get("expert"):
            where.append("v.expert = %s")
            params.append(filters["expert"])
        if filters.get("since"):
            where.append("v.updated_at >= %s")
            params.append(filters["since"])
        if filters.get("until"):
            where.append("v.updated_at < %s")
            params.append(filters["until"])
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    self._CONV_SELECT + clause + " ORDER BY v.updated_at DESC LIMIT %s OFFSET %s",
                    (*params, limit, offset),
                )
            ).fetchall()
        return [self._conversation(r) for r in rows]

    async def set_conversation_email(self, conversation_id: str, email: str | None) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE copines.conversations SET email = %s WHERE id = %s",
                (email, conversation_id),
            )

    async def conversations_by_email(self, email: str) -> list[Conversation]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    self._CONV_SELECT
                    + " WHERE lower(v.email) = lower(%s) ORDER BY v.updated_at DESC",
                    (email.strip(),),
                )
            ).fetchall()
        return [self._conversation(r) for r in rows]

    async def delete_conversation(self, conversation_id: str) -> bool:
        # Foreign keys cascade to messages, escalations and feedback.
        async with self._conn() as conn:
            cur = await conn.execute(
                "DELETE FROM copines.conversations WHERE id = %s", (conversation_id,)
            )
            return cur.rowcount > 0

    async def purge_conversations(self, before: datetime) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(
                "DELETE FROM copines.conversations WHERE updated_at < %s", (before,)
            )
            return cur.rowcount

    # Messages ------------------------------------------------------------------------
    @staticmethod
    def _message(row: dict[str, Any]) -> Message:
        return message_from_row(row, _same, _utc)

    async def add_message(self, message: Message) -> int:
        # The message and the conversation's updated_at in one statement (one round trip).
        with _conversation_needed(message.conversation_id):
            async with self._conn() as conn:
                row = await (
                    await conn.execute(
                        "WITH m AS (INSERT INTO copines.messages (conversation_id, role, content, "
                        "status, agent, confidence, router, sources, model, prompt_tokens, "
                        "completion_tokens, cost_usd, timings, meta) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        "RETURNING id, conversation_id, created_at), "
                        "v AS (UPDATE copines.conversations v SET updated_at = m.created_at "
                        "FROM m WHERE v.id = m.conversation_id) "
                        "SELECT id, created_at FROM m",
                        (
                            message.conversation_id,
                            message.role,
                            message.content,
                            message.status,
                            message.agent,
                            message.confidence,
                            message.router,
                            _json(message.sources),
                            message.model,
                            message.prompt_tokens,
                            message.completion_tokens,
                            message.cost_usd,
                            _json(message.timings_ms),
                            _json(message.meta),
                        ),
                    )
                ).fetchone()
        message.id = int(row["id"])
        message.created_at = _utc(row["created_at"])
        return message.id

    async def get_messages(
        self, conversation_id: str, limit: int | None = None, after_id: int | None = None
    ) -> list[Message]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM copines.messages WHERE conversation_id = %s AND id > %s "
                    "ORDER BY id DESC LIMIT %s",
                    (conversation_id, after_id or 0, limit),
                )
            ).fetchall()
        return [self._message(r) for r in reversed(rows)]

    async def get_message(self, message_id: int) -> Message | None:
        async with self._conn() as conn:
            row = await (
                await conn.execute("SELECT * FROM copines.messages WHERE id = %s", (message_id,))
            ).fetchone()
        return self._message(row) if row else None

    async def update_message_meta(self, message_id: int, values: dict[str, Any]) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE copines.messages SET meta = meta || %s WHERE id = %s",
                (_json(values), message_id),
            )

    async def messages_between(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[Message]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM copines.messages WHERE (%(since)s::timestamptz IS NULL "
                    "OR created_at >= %(since)s) AND (%(until)s::timestamptz IS NULL "
                    "OR created_at < %(until)s) ORDER BY id",
                    {"since": since, "until": until},
                )
            ).fetchall()
        return [self._message(r) for r in rows]

    # Escalations and feedback --------------------------------------------------------
    @staticmethod
    def _escalation(row: dict[str, Any]) -> Escalation:
        return escalation_from_row(row, _same, _utc)

    async def add_escalation(self, escalation: Escalation) -> int:
        with _conversation_needed(escalation.conversation_id):
            async with self._conn() as conn:
                row = await (
                    await conn.execute(
                        "INSERT INTO copines.escalations AS e (conversation_id, message_id, reason, "
                        "primary_need, brief, closest_expert, status, meta) "
                        "VALUES (%s, %s, %s, %s, %s, %s, 'open', %s) "
                        "ON CONFLICT (conversation_id) WHERE status = 'open' DO UPDATE SET "
                        "message_id = EXCLUDED.message_id, reason = EXCLUDED.reason, "
                        "primary_need = EXCLUDED.primary_need, brief = EXCLUDED.brief, "
                        "closest_expert = EXCLUDED.closest_expert, "
                        "meta = EXCLUDED.meta || jsonb_build_object('handoffs', "
                        "coalesce((e.meta->>'handoffs')::int, 1) + 1), "
                        "updated_at = clock_timestamp() "
                        "RETURNING id, (xmax <> 0) AS merged",
                        (
                            escalation.conversation_id,
                            escalation.message_id,
                            escalation.reason,
                            escalation.primary_need,
                            escalation.brief,
                            escalation.closest_expert,
                            _json(escalation.meta),
                        ),
                    )
                ).fetchone()
        escalation.id, escalation.merged = int(row["id"]), bool(row["merged"])
        escalation.status = "open"
        return escalation.id

    async def list_escalations(self, status: str | None = "open") -> list[Escalation]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM copines.escalations "
                    "WHERE %(status)s::text IS NULL OR status = %(status)s ORDER BY id DESC",
                    {"status": status},
                )
            ).fetchall()
        return [self._escalation(r) for r in rows]

    async def get_escalation(self, escalation_id: int) -> Escalation | None:
        async with self._conn() as conn:
            row = await (
                await conn.execute(
                    "SELECT * FROM copines.escalations WHERE id = %s", (escalation_id,)
                )
            ).fetchone()
        return self._escalation(row) if row else None

    async def set_escalation_status(self, escalation_id: int, status: str) -> None:
        async with self._conn() as conn:
            try:
                cur = await conn.execute(
                    "UPDATE copines.escalations SET status = %s, updated_at = clock_timestamp() "
                    "WHERE id = %s",
                    (status, escalation_id),
                )
            except psycopg.errors.UniqueViolation as exc:
                raise InputError(ANOTHER_OPEN) from exc
            if cur.rowcount == 0:
                raise NotFoundError(f"no escalation {escalation_id}")

    async def add_feedback(self, feedback: Feedback) -> int:
        async with self._conn() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO copines.feedback (conversation_id, message_id, rating, comment) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (message_id) DO UPDATE SET "
                    "rating = excluded.rating, comment = excluded.comment, "
                    "created_at = clock_timestamp() RETURNING id",
                    (
                        feedback.conversation_id,
                        feedback.message_id,
                        feedback.rating,
                        feedback.comment,
                    ),
                )
            ).fetchone()
        feedback.id = int(row["id"])
        return feedback.id

    async def list_feedback(self, conversation_id: str | None = None) -> list[Feedback]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM copines.feedback "
                    "WHERE %(c)s::text IS NULL OR conversation_id = %(c)s ORDER BY id DESC",
                    {"c": conversation_id},
                )
            ).fetchall()
        return [feedback_from_row(r, _utc) for r in rows]

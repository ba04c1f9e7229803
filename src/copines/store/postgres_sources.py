"""The sources half of the Postgres store: the sources kept in sync and their items' state."""

from __future__ import annotations

import time
from typing import Any

from copines.store.base import (
    LEASE_PREFIX,
    SourceItem,
    SourceRecord,
    lease_value,
    source_from_row,
    source_item_from_row,
)
from copines.store.postgres_conversations import _json, _same, _utc


class SourcesMixin:
    """Mixed into PostgresStore, which provides `_conn()`; one statement per method."""

    async def save_source(self, source: SourceRecord) -> int:
        async with self._conn() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO copines.sources (name, kind, target, owner, options, origin) "
                    "VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
                    "target = excluded.target, owner = excluded.owner, "
                    "options = excluded.options, origin = excluded.origin, "
                    "updated_at = clock_timestamp() RETURNING id",
                    (
                        source.name,
                        source.kind,
                        source.target,
                        source.owner,
                        _json(source.options),
                        source.origin,
                    ),
                )
            ).fetchone()
        return int(row["id"])

    async def list_sources(self) -> list[SourceRecord]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT s.*, (SELECT count(*) FROM copines.source_items i "
                    "WHERE i.source_id = s.id) AS documents FROM copines.sources s ORDER BY s.name"
                )
            ).fetchall()
        return [_source(r) for r in rows]

    async def delete_source(self, source_id: int) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM copines.sources WHERE id = %s", (source_id,))

    async def record_sync(
        self, source_id: int, status: str, counts: dict[str, int], errors: list[str]
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE copines.sources SET last_sync_at = clock_timestamp(), last_status = %s, "
                "counts = %s, errors = %s WHERE id = %s",
                (status, _json(counts), _json(errors), source_id),
            )

    async def source_items(self, source_id: int) -> list[SourceItem]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM copines.source_items WHERE source_id = %s ORDER BY key",
                    (source_id,),
                )
            ).fetchall()
        return [source_item_from_row(r, _same) for r in rows]

    async def save_source_item(self, item: SourceItem) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO copines.source_items (source_id, key, filename, url, etag, "
                "last_modified, version, content_hash, meta) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (source_id, key) DO UPDATE SET filename = excluded.filename, "
                "url = excluded.url, etag = excluded.etag, "
                "last_modified = excluded.last_modified, version = excluded.version, "
                "content_hash = excluded.content_hash, meta = excluded.meta, "
                "synced_at = clock_timestamp()",
                (
                    item.source_id,
                    item.key,
                    item.filename,
                    item.url,
                    item.etag,
                    item.last_modified,
                    item.version,
                    item.content_hash,
                    _json(item.meta),
                ),
            )

    async def delete_source_item(self, source_id: int, key: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "DELETE FROM copines.source_items WHERE source_id = %s AND key = %s",
                (source_id, key),
            )

    async def claim_lease(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()
        async with self._conn() as conn:
            cursor = await conn.execute(
                "INSERT INTO copines.meta AS m (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                "WHERE m.value < %s OR split_part(m.value, '|', 2) = %s",
                (
                    LEASE_PREFIX + name,
                    lease_value(now + seconds, holder),
                    lease_value(now, ""),
                    holder,
                ),
            )
            return cursor.rowcount == 1

    async def release_lease(self, name: str, holder: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "DELETE FROM copines.meta WHERE key = %s AND split_part(value, '|', 2) = %s",
                (LEASE_PREFIX + name, holder),
            )


def _source(r: dict[str, Any]) -> SourceRecord:
    return source_from_row(r, _same, _utc)

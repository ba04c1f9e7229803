"""The sources half of the SQLite store: the sources kept in sync and their items' state."""

from __future__ import annotations

import json
import sqlite3
import time

from copines.store.base import (
    LEASE_PREFIX,
    SourceItem,
    SourceRecord,
    lease_value,
    source_from_row,
    source_item_from_row,
)
from copines.store.sqlite_conversations import _dt, _now


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


class SQLiteSources:
    """Mixed into `SQLiteStore`, which provides `_run` and `_tx`."""

    async def save_source(self, source: SourceRecord) -> int:
        def write(db: sqlite3.Connection) -> int:
            with self._tx(db):
                now = _now()
                db.execute(
                    "INSERT INTO sources (name, kind, target, owner, options, origin, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
                    "target = excluded.target, owner = excluded.owner, "
                    "options = excluded.options, origin = excluded.origin, "
                    "updated_at = excluded.updated_at",
                    (
                        source.name,
                        source.kind,
                        source.target,
                        source.owner,
                        _dumps(source.options),
                        source.origin,
                        now,
                        now,
                    ),
                )
                row = db.execute("SELECT id FROM sources WHERE name = ?", (source.name,)).fetchone()
                return int(row[0])

        return await self._run(write)

    async def list_sources(self) -> list[SourceRecord]:
        def read(db: sqlite3.Connection) -> list[SourceRecord]:
            rows = db.execute(
                "SELECT s.*, (SELECT COUNT(*) FROM source_items i WHERE i.source_id = s.id) "
                "AS documents FROM sources s ORDER BY s.name"
            ).fetchall()
            return [source_from_row(r, json.loads, _dt) for r in rows]

        return await self._run(read)

    async def delete_source(self, source_id: int) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.execute("DELETE FROM source_items WHERE source_id = ?", (source_id,))
                db.execute("DELETE FROM sources WHERE id = ?", (source_id,))

        await self._run(write)

    async def record_sync(
        self, source_id: int, status: str, counts: dict[str, int], errors: list[str]
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.execute(
                    "UPDATE sources SET last_sync_at = ?, last_status = ?, counts = ?, "
                    "errors = ? WHERE id = ?",
                    (_now(), status, _dumps(counts), _dumps(errors), source_id),
                )

        await self._run(write)

    async def source_items(self, source_id: int) -> list[SourceItem]:
        def read(db: sqlite3.Connection) -> list[SourceItem]:
            rows = db.execute(
                "SELECT * FROM source_items WHERE source_id = ? ORDER BY key", (source_id,)
            ).fetchall()
            return [source_item_from_row(r, json.loads) for r in rows]

        return await self._run(read)

    async def save_source_item(self, item: SourceItem) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.execute(
                    "INSERT INTO source_items (source_id, key, filename, url, etag, "
                    "last_modified, version, content_hash, meta, synced_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (source_id, key) DO UPDATE SET filename = excluded.filename, "
                    "url = excluded.url, etag = excluded.etag, "
                    "last_modified = excluded.last_modified, version = excluded.version, "
                    "content_hash = excluded.content_hash, meta = excluded.meta, "
                    "synced_at = excluded.synced_at",
                    (
                        item.source_id,
                        item.key,
                        item.filename,
                        item.url,
                        item.etag,
                        item.last_modified,
                        item.version,
                        item.content_hash,
                        _dumps(item.meta),
                        _now(),
                    ),
                )

        await self._run(write)

    async def delete_source_item(self, source_id: int, key: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.execute(
                    "DELETE FROM source_items WHERE source_id = ? AND key = ?", (source_id, key)
                )

        await self._run(write)

    async def claim_lease(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()

        def write(db: sqlite3.Connection) -> bool:
            with self._tx(db):
                cursor = db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value WHERE meta.value < ? "
                    "OR substr(meta.value, instr(meta.value, '|') + 1) = ?",
                    (
                        LEASE_PREFIX + name,
                        lease_value(now + seconds, holder),
                        lease_value(now, ""),
                        holder,
                    ),
                )
                return cursor.rowcount == 1

        return await self._run(write)

    async def release_lease(self, name: str, holder: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.execute(
                    "DELETE FROM meta WHERE key = ? AND substr(value, instr(value, '|') + 1) = ?",
                    (LEASE_PREFIX + name, holder),
                )

        await self._run(write)

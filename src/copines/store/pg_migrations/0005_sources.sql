-- The sources kept in sync (a site, a Drive folder, a Notion database) and, per source, the
-- documents they made with what the next sync compares against (ETag, Last-Modified, Drive's
-- modifiedTime, Notion's last_edited_time).
CREATE TABLE copines.sources (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE,
  kind text NOT NULL,
  target text NOT NULL,
  owner text NOT NULL DEFAULT 'auto',
  options jsonb NOT NULL DEFAULT '{}',
  origin text NOT NULL DEFAULT 'cli',
  last_sync_at timestamptz,
  last_status text NOT NULL DEFAULT 'never',
  counts jsonb NOT NULL DEFAULT '{}',
  errors jsonb NOT NULL DEFAULT '[]',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE copines.sources ENABLE ROW LEVEL SECURITY;

CREATE TABLE copines.source_items (
  source_id bigint NOT NULL REFERENCES copines.sources (id) ON DELETE CASCADE,
  key text NOT NULL,
  filename text NOT NULL,
  url text,
  etag text,
  last_modified text,
  version text,
  content_hash text NOT NULL DEFAULT '',
  meta jsonb NOT NULL DEFAULT '{}',
  synced_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (source_id, key)
);
CREATE INDEX source_items_filename_idx ON copines.source_items (filename);
ALTER TABLE copines.source_items ENABLE ROW LEVEL SECURITY;

-- Knowledge: documents owned by an expert (or 'shared'), their chunks, the vector and text indexes.
-- Everything lives in the `copines` schema: Supabase exposes `public` through its REST API to
-- anyone holding the anon key, so nothing of ours goes there. Row-level security is on with no
-- policy: only the owner role (the one that ran these migrations) reads or writes.

CREATE TABLE copines.meta (key text PRIMARY KEY, value text NOT NULL);

-- Accents folded like the SQLite store's FTS5 ("Étape" -> "etape"); immutable, so usable in a
-- generated column, and no extension needed (Supabase and a plain Postgres alike).
CREATE FUNCTION copines.fold(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
AS $$
  SELECT translate(
    replace(replace(lower(t), 'œ', 'oe'), 'æ', 'ae'),
    'àâäáãåçéèêëíìîïñóòôöõúùûüýÿ',
    'aaaaaaceeeeiiiinooooouuuuyy')
$$;

CREATE TABLE copines.documents (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  filename text NOT NULL UNIQUE,
  title text NOT NULL,
  agent_owner text NOT NULL CHECK (agent_owner <> ''),  -- an expert id, or 'shared'
  owner_reason text NOT NULL DEFAULT '',
  tags text[] NOT NULL DEFAULT '{}',
  category text,
  priority integer NOT NULL DEFAULT 1,
  content_hash text NOT NULL,
  source_path text,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX documents_agent_owner_idx ON copines.documents (agent_owner);

CREATE TABLE copines.document_chunks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  document_id bigint NOT NULL REFERENCES copines.documents (id) ON DELETE CASCADE,
  -- A copy of the document's owner, kept by triggers, so the vector index scan filters on it
  -- without a join.
  agent_owner text NOT NULL,
  position integer NOT NULL,
  heading_path text NOT NULL DEFAULT '',
  content text NOT NULL,
  keywords text[] NOT NULL DEFAULT '{}',
  relevance_score real NOT NULL DEFAULT 1.0,
  -- Typed vector(N) at the first ingest, from the embedder's size (see meta 'embedder', 'dim').
  embedding vector NOT NULL,
  embedder text NOT NULL,
  -- French stems and plain folded words (for prefix terms, as in the SQLite store), text first.
  search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('french'::regconfig, copines.fold(content)), 'A')
    || setweight(to_tsvector('simple'::regconfig, copines.fold(content)), 'B')
    || setweight(to_tsvector('french'::regconfig, copines.fold(heading_path)), 'C')
    || setweight(to_tsvector('simple'::regconfig, copines.fold(heading_path)), 'D')
  ) STORED
);
CREATE INDEX document_chunks_document_idx ON copines.document_chunks (document_id, position);
CREATE INDEX document_chunks_agent_owner_idx ON copines.document_chunks (agent_owner);
CREATE INDEX document_chunks_keywords_idx ON copines.document_chunks USING gin (keywords);
CREATE INDEX document_chunks_search_idx ON copines.document_chunks USING gin (search);

CREATE FUNCTION copines.chunk_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  SELECT d.agent_owner INTO NEW.agent_owner FROM copines.documents d WHERE d.id = NEW.document_id;
  RETURN NEW;
END
$$;
CREATE TRIGGER document_chunks_owner BEFORE INSERT OR UPDATE OF document_id
  ON copines.document_chunks FOR EACH ROW EXECUTE FUNCTION copines.chunk_owner();

-- The agency re-tags documents with plain UPDATEs (see its architecture note): follow them.
CREATE FUNCTION copines.document_owner_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE copines.document_chunks SET agent_owner = NEW.agent_owner WHERE document_id = NEW.id;
  RETURN NULL;
END
$$;
CREATE TRIGGER documents_owner_changed AFTER UPDATE OF agent_owner ON copines.documents
  FOR EACH ROW WHEN (OLD.agent_owner IS DISTINCT FROM NEW.agent_owner)
  EXECUTE FUNCTION copines.document_owner_changed();

-- One function for every expert (the note had one copy per expert): her chunks and the shared
-- ones, at least `match_threshold` similar, best first. The inner query is the one the HNSW index
-- answers (ORDER BY distance LIMIT n); the threshold is applied after it, which gives the same
-- rows since similarity falls as distance grows. Plain SQL, so the planner inlines it.
CREATE FUNCTION copines.match_chunks(
  query_embedding vector,
  expert text,
  match_threshold double precision DEFAULT 0.3,
  match_count integer DEFAULT 20
)
RETURNS TABLE (id bigint, document_id bigint, filename text, content text, similarity double precision)
LANGUAGE sql STABLE
AS $$
  SELECT m.id, m.document_id, d.filename, m.content, m.similarity
  FROM (
    SELECT c.id, c.document_id, c.content, 1 - (c.embedding <=> query_embedding) AS similarity
    FROM copines.document_chunks c
    WHERE c.agent_owner IN (expert, 'shared')
    ORDER BY c.embedding <=> query_embedding
    LIMIT match_count
  ) m
  JOIN copines.documents d ON d.id = m.document_id
  WHERE m.similarity >= match_threshold
  ORDER BY m.similarity DESC
$$;

ALTER TABLE copines.meta ENABLE ROW LEVEL SECURITY;
ALTER TABLE copines.documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE copines.document_chunks ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON FUNCTION copines.match_chunks(vector, text, double precision, integer) FROM PUBLIC;

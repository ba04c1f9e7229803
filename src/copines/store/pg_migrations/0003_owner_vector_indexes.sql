-- One HNSW index per owner (partial: WHERE agent_owner = '<owner>'), created by the store as
-- owners appear, instead of one index for all: an expert's search walks her graph and the shared
-- one, each unfiltered, rather than one big graph whose results the owner filter then thins
-- (recall@20 at 100k chunks: 0.94 at ef_search 1000 before, 0.99 at 200 after; bench/postgres.py).
DROP INDEX IF EXISTS copines.document_chunks_embedding_idx;

-- Each branch names one owner, so the planner can answer it from that owner's index.
CREATE OR REPLACE FUNCTION copines.match_chunks(
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
    (SELECT c.id, c.document_id, c.content, 1 - (c.embedding <=> query_embedding) AS similarity
     FROM copines.document_chunks c
     WHERE c.agent_owner = expert AND expert <> 'shared'
     ORDER BY c.embedding <=> query_embedding
     LIMIT match_count)
    UNION ALL
    (SELECT c.id, c.document_id, c.content, 1 - (c.embedding <=> query_embedding) AS similarity
     FROM copines.document_chunks c
     WHERE c.agent_owner = 'shared'
     ORDER BY c.embedding <=> query_embedding
     LIMIT match_count)
  ) m
  JOIN copines.documents d ON d.id = m.document_id
  WHERE m.similarity >= match_threshold
  ORDER BY m.similarity DESC
  LIMIT match_count
$$;
REVOKE ALL ON FUNCTION copines.match_chunks(vector, text, double precision, integer) FROM PUBLIC;

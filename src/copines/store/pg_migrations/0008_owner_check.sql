-- The owners a document may have: the experts' ids and 'shared', written by every process at
-- start-up from the expert files (Store.register_owners). A trigger refuses any other owner on
-- insert or update, whoever writes (the CLI, the console, a hand-written UPDATE): a typo such as
-- 'audery' would hide a document from every expert.
CREATE TABLE IF NOT EXISTS copines.owners (
  id text PRIMARY KEY CHECK (id <> ''),
  registered_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE copines.owners ENABLE ROW LEVEL SECURITY;

CREATE OR REPLACE FUNCTION copines.check_document_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM copines.owners o WHERE o.id = NEW.agent_owner) THEN
    RAISE EXCEPTION 'unknown owner %: not an expert of the expert files, nor shared', NEW.agent_owner
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER documents_owner_known BEFORE INSERT OR UPDATE OF agent_owner
  ON copines.documents FOR EACH ROW EXECUTE FUNCTION copines.check_document_owner();

-- The bundled experts and the shared base, so that a store used before any process registered
-- its experts accepts them.
INSERT INTO copines.owners (id) VALUES ('shared'), ('audrey'), ('carole') ON CONFLICT DO NOTHING;

-- The visitor's optional email, and at most one open escalation per conversation (the older
-- duplicates are closed first).

ALTER TABLE copines.conversations ADD COLUMN email text;
CREATE INDEX conversations_email_idx ON copines.conversations (lower(email))
  WHERE email IS NOT NULL;

UPDATE copines.escalations SET status = 'handled', updated_at = clock_timestamp()
WHERE status = 'open' AND id NOT IN
  (SELECT max(id) FROM copines.escalations WHERE status = 'open' GROUP BY conversation_id);
CREATE UNIQUE INDEX escalations_one_open_idx ON copines.escalations (conversation_id)
  WHERE status = 'open';

-- Conversations, messages, escalations and feedback (the SQLite columns, with Postgres types).

CREATE TABLE copines.conversations (
  id text PRIMARY KEY,
  token_hash text NOT NULL,
  expert text,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX conversations_updated_idx ON copines.conversations (updated_at);

CREATE TABLE copines.messages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conversation_id text NOT NULL REFERENCES copines.conversations (id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('user', 'assistant', 'team')),
  content text NOT NULL,
  status text NOT NULL DEFAULT 'ok',
  agent text,
  confidence double precision,
  router text,
  sources jsonb NOT NULL DEFAULT '[]',
  model text,
  prompt_tokens integer,
  completion_tokens integer,
  cost_usd double precision,
  timings jsonb NOT NULL DEFAULT '{}',
  meta jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_conversation_idx ON copines.messages (conversation_id, id);
CREATE INDEX messages_created_idx ON copines.messages (created_at);

CREATE TABLE copines.escalations (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conversation_id text NOT NULL REFERENCES copines.conversations (id) ON DELETE CASCADE,
  message_id bigint REFERENCES copines.messages (id) ON DELETE SET NULL,
  reason text NOT NULL,
  primary_need text NOT NULL DEFAULT '',
  brief text NOT NULL DEFAULT '',
  closest_expert text,
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'handled')),
  meta jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX escalations_status_idx ON copines.escalations (status, created_at);

CREATE TABLE copines.feedback (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conversation_id text NOT NULL REFERENCES copines.conversations (id) ON DELETE CASCADE,
  message_id bigint NOT NULL UNIQUE REFERENCES copines.messages (id) ON DELETE CASCADE,
  rating integer NOT NULL CHECK (rating IN (-1, 1)),
  comment text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

ALTER TABLE copines.conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE copines.messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE copines.escalations ENABLE ROW LEVEL SECURITY;
ALTER TABLE copines.feedback ENABLE ROW LEVEL SECURITY;

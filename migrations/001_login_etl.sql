-- Pipeline bookkeeping, kept apart from the user's table in its own schema.

-- The ledger: every SQS MessageId whose outcome has been committed. A message is written to
-- user_logins or rejected_messages in the same transaction as its ledger row, so a
-- redelivered message finds its id here and is skipped.
CREATE TABLE login_etl.processed_messages (
    message_id   text        PRIMARY KEY,
    outcome      text        NOT NULL CHECK (outcome IN ('written', 'rejected')),
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Messages that are not valid login events, kept for people to inspect. The body has its
-- ip and device_id values masked exactly as user_logins has them.
CREATE TABLE login_etl.rejected_messages (
    message_id    text        PRIMARY KEY,
    reason        text        NOT NULL,
    body          text        NOT NULL,
    sent_at       timestamptz,
    receive_count integer,
    rejected_at   timestamptz NOT NULL DEFAULT now()
);

-- user_logins.app_version holds major * 1000000 + minor * 1000 + patch; this turns it back
-- into text: login_etl.app_version_text(2003000) = '2.3.0'.
CREATE FUNCTION login_etl.app_version_text(version integer) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (version / 1000000)::text || '.' || (version / 1000 % 1000)::text || '.' || (version % 1000)::text $$;

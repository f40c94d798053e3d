-- Rejected messages are sealed, not scrubbed: the original body is stored encrypted for key
-- holders, and in clear only what holds no personal data by construction.

ALTER TABLE login_etl.rejected_messages
    -- UTF-8 bytes of the original body.
    ADD COLUMN body_bytes  integer,
    -- body:<key id>:<base64url HMAC-SHA-256> of the body: equal bodies have equal tokens.
    ADD COLUMN body_token  text,
    -- For a JSON object, the fields the pipeline knows (present, type, length; values only for
    -- user_id, device_type, locale and app_version when their column would take them) and a count
    -- of the other keys, never their names. {"json": "invalid"} for a body that is not JSON.
    ADD COLUMN body_shape  jsonb,
    -- The original body: AES-256-GCM under a sub-key of the masking key ('aead', hmac and siv
    -- modes), or a libsodium sealed box to the vault public key ('box', vault mode).
    ADD COLUMN sealed_body bytea,
    ADD COLUMN seal_key_id text,
    ADD COLUMN seal_scheme text CHECK (seal_scheme IN ('aead', 'box')),
    -- Set by `login-etl rejected replay` when the original was sent back to a queue.
    ADD COLUMN replayed_at timestamptz,
    ADD CONSTRAINT rejected_messages_sealed CHECK ((sealed_body IS NULL) = (seal_key_id IS NULL) AND (sealed_body IS NULL) = (seal_scheme IS NULL));

-- Bodies written before this migration were scrubbed as text, which can miss personal data.
-- They wait here, out of the column analysts read, until the first `run` (or Lambda handler)
-- with a key seals them and clears this column. A body is either here or sealed, never both.
ALTER TABLE login_etl.rejected_messages RENAME COLUMN body TO legacy_body;
ALTER TABLE login_etl.rejected_messages ALTER COLUMN legacy_body DROP NOT NULL;
ALTER TABLE login_etl.rejected_messages
    ADD CONSTRAINT rejected_messages_one_body CHECK (legacy_body IS NULL OR sealed_body IS NULL);
CREATE INDEX rejected_messages_legacy ON login_etl.rejected_messages (message_id) WHERE legacy_body IS NOT NULL;

-- Masking modes that key holders can reverse, and the record of every time they do.

-- Vault mode: user_logins holds one-way hmac tokens; the original behind each token is kept
-- here, sealed with an X25519 public key (libsodium sealed box). The pipeline holds only the
-- public key, so it can add rows but never read them back; key holders open them with
-- `login-etl unmask`. field says which per-field hmac key made the token, so an opened value
-- can be checked against its token.
CREATE TABLE login_etl.pii_vault (
    token      text        PRIMARY KEY,
    key_id     text        NOT NULL,
    field      text        NOT NULL CHECK (field IN ('ip', 'device_id')),
    sealed     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pii_vault_key_id ON login_etl.pii_vault (key_id);

-- One row per use of `login-etl unmask`: who, when, why, how many values and with which keys.
-- Never the values themselves, masked or not.
CREATE TABLE login_etl.unmask_audit (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unmasked_at      timestamptz NOT NULL DEFAULT now(),
    os_user          text        NOT NULL,
    db_user          text        NOT NULL DEFAULT current_user,
    reason           text,
    source           text        NOT NULL CHECK (source IN ('arguments', 'stdin', 'query')),
    values_requested integer     NOT NULL,
    values_recovered integer     NOT NULL,
    key_ids          text[]      NOT NULL
);

-- The database roles of login-etl: four NOLOGIN group roles, the owner of every login-etl
-- object, and the privileges each group gets. Run as a superuser after `login-etl migrate`, and
-- again after every upgrade (a new migration may add objects that need their owner and grants):
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/postgres-roles.sql
--
-- Idempotent: it states the whole layout each time, revoking what a group should not have.
-- People and services log in as LOGIN users made members of a group (docs/pii.md, "Roles"):
--   CREATE ROLE etl_pipeline LOGIN PASSWORD '...' IN ROLE login_etl_writer;
--
--   login_etl_owner      owns the login_etl schema, its tables and functions, and user_logins;
--                        runs `login-etl migrate`.
--   login_etl_writer     what `run` and the Lambda handler need, and nothing more.
--   login_etl_analyst    reads user_logins and the non-secret columns of rejected_messages
--                        (`report`).
--   login_etl_keyholder  an analyst that also reads the vault, whole rejected messages and the
--                        audit, records its uses through login_etl.record_audit (`unmask`),
--                        and rewrites values (`rekey`).
-- Nobody but the owner may change the audit, and a trigger stops the owner too (migration 005).
-- user_logins is the table on this session's search path, as login-etl resolves it.

BEGIN;

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['login_etl_owner', 'login_etl_writer', 'login_etl_analyst', 'login_etl_keyholder'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
        EXECUTE format('ALTER ROLE %I NOLOGIN', name);
    END LOOP;
END
$$;

-- The owner: everything login-etl created (tables and functions; the sequence of an identity
-- column follows its table).
ALTER SCHEMA login_etl OWNER TO login_etl_owner;
DO $$
DECLARE
    object text;
BEGIN
    FOR object IN
        SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'login_etl'::regnamespace AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO login_etl_owner', object);
    END LOOP;
    FOR object IN
        SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'login_etl'::regnamespace
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO login_etl_owner', object);
    END LOOP;
    -- The schema user_logins lives in (public, usually): every group must be able to reach it.
    EXECUTE format('GRANT USAGE ON SCHEMA %s TO login_etl_writer, login_etl_analyst, login_etl_keyholder',
                   (SELECT relnamespace::regnamespace::text FROM pg_catalog.pg_class WHERE oid = 'user_logins'::regclass));
END
$$;
ALTER TABLE user_logins OWNER TO login_etl_owner;

-- Start from nothing, so a privilege removed from this file is removed from the database
-- (revoking a table privilege revokes it on every column too). PUBLIC keeps only EXECUTE on
-- harmless functions such as app_version_text; migration 005 revoked it on record_audit.
REVOKE ALL ON ALL TABLES IN SCHEMA login_etl FROM PUBLIC, login_etl_writer, login_etl_analyst, login_etl_keyholder;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA login_etl FROM login_etl_writer, login_etl_analyst, login_etl_keyholder;
REVOKE EXECUTE ON FUNCTION login_etl.record_audit(text, text, text, text, integer, integer, text[], text[], text) FROM PUBLIC;
REVOKE ALL ON TABLE user_logins FROM PUBLIC, login_etl_writer, login_etl_analyst, login_etl_keyholder;
REVOKE ALL ON SCHEMA login_etl FROM PUBLIC, login_etl_writer, login_etl_analyst, login_etl_keyholder;
GRANT USAGE ON SCHEMA login_etl TO login_etl_writer, login_etl_analyst, login_etl_keyholder;

-- The writer: every start reads which migrations are applied (and, having nothing to apply,
-- creates nothing), and seals rejected bodies stored before migration 004 (it reads them from
-- legacy_body and rewrites the row); each batch inserts the ledger rows (RETURNING their ids),
-- the rows, the rejected messages and the vault entries in one statement; pruning deletes old
-- ledger rows. ON CONFLICT (token) needs SELECT on token, the hmac value user_logins also
-- holds; the sealed originals stay unreadable.
GRANT SELECT ON login_etl.schema_migrations TO login_etl_writer;
GRANT INSERT ON user_logins TO login_etl_writer;
GRANT SELECT, INSERT, DELETE ON login_etl.processed_messages TO login_etl_writer;
-- Forwarding to the dead-letter queue is claimed and recorded on the rejection
-- (forward_claimed_at, forwarded_at, forward_error), and a redelivered rejection is looked up by
-- id to see whether it still needs forwarding.
GRANT INSERT, SELECT (message_id, reason, legacy_body, body_shape, forward_claimed_at, forward_claimed_by, forwarded_at, forward_error),
      UPDATE (legacy_body, body_bytes, body_token, body_shape, sealed_body, seal_key_id, seal_scheme, forward_claimed_at, forward_claimed_by, forwarded_at, forward_error)
   ON login_etl.rejected_messages TO login_etl_writer;
GRANT INSERT, SELECT (token) ON login_etl.pii_vault TO login_etl_writer;

-- The analyst: user_logins, and of a rejected message everything but its body (sealed_body, and
-- legacy_body until run has sealed it): size, keyed token and shape hold no personal data.
GRANT SELECT ON user_logins TO login_etl_analyst;
GRANT SELECT (message_id, reason, sent_at, receive_count, rejected_at, body_bytes, body_token, body_shape,
              seal_key_id, seal_scheme, replayed_at, forward_claimed_at, forwarded_at, forward_error)
   ON login_etl.rejected_messages TO login_etl_analyst;
GRANT EXECUTE ON FUNCTION login_etl.app_version_text(integer) TO login_etl_analyst;

-- The key holder: an analyst, plus what unmask and rekey read and write. rekey rewrites the
-- masked values in place (SELECT ... FOR UPDATE needs UPDATE), seals rejected bodies again under
-- the new key, adds vault entries for it and deletes unreferenced ones of earlier keys under a
-- SHARE lock on user_logins, which takes a table privilege: MAINTAIN from PostgreSQL 17 (it
-- changes no row), UPDATE before.
DO $$
BEGIN
    IF NOT pg_catalog.pg_has_role('login_etl_keyholder', 'login_etl_analyst', 'MEMBER') THEN
        GRANT login_etl_analyst TO login_etl_keyholder;
    END IF;
    IF current_setting('server_version_num')::integer >= 170000 THEN
        EXECUTE 'GRANT MAINTAIN ON user_logins TO login_etl_keyholder';
    ELSE
        GRANT UPDATE ON user_logins TO login_etl_keyholder;
    END IF;
END
$$;
GRANT SELECT ON login_etl.schema_migrations TO login_etl_keyholder;
GRANT SELECT, UPDATE (legacy_body, body_bytes, body_token, body_shape, sealed_body, seal_key_id, seal_scheme, replayed_at)
   ON login_etl.rejected_messages TO login_etl_keyholder;
GRANT SELECT, INSERT, DELETE ON login_etl.pii_vault TO login_etl_keyholder;
GRANT UPDATE (masked_ip, masked_device_id) ON user_logins TO login_etl_keyholder;
GRANT SELECT ON login_etl.unmask_audit TO login_etl_keyholder;
GRANT EXECUTE ON FUNCTION login_etl.record_audit(text, text, text, text, integer, integer, text[], text[], text) TO login_etl_keyholder;

COMMIT;

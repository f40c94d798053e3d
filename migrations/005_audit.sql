-- The audit of every use of originals and secrets: `unmask`, and the `rejected` actions that
-- read, export or replay quarantined messages. A row is written first, through
-- login_etl.record_audit, and is never changed or removed afterwards.
-- Written so that applying it twice changes nothing.

ALTER TABLE login_etl.unmask_audit
    ADD COLUMN IF NOT EXISTS action text NOT NULL DEFAULT 'unmask'
        CONSTRAINT unmask_audit_action_check
        CHECK (action IN ('unmask', 'rejected-list', 'rejected-show', 'rejected-export', 'rejected-replay')),
    -- Ids of the rejected messages a rejected-* action read; never their contents.
    ADD COLUMN IF NOT EXISTS message_ids text[],
    -- The queue URL a rejected-replay sent the messages to.
    ADD COLUMN IF NOT EXISTS target text,
    -- 'filter': rows chosen by a filter such as --since.
    DROP CONSTRAINT IF EXISTS unmask_audit_source_check,
    ADD CONSTRAINT unmask_audit_source_check CHECK (source IN ('arguments', 'stdin', 'query', 'filter'));

-- The only way in for everyone but the owner. db_user is session_user, the user that logged in:
-- inside a SECURITY DEFINER function current_user is the function's owner, and a caller cannot
-- choose either. The search path is fixed so that no object of the caller's can stand in for
-- ours. Returns the id, or NULL when the row was not stored.
CREATE OR REPLACE FUNCTION login_etl.record_audit(
    action           text,
    source           text,
    os_user          text,
    reason           text,
    values_requested integer,
    values_recovered integer,
    key_ids          text[],
    message_ids      text[] DEFAULT NULL,
    target           text   DEFAULT NULL)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    INSERT INTO login_etl.unmask_audit
           (action, source, os_user, db_user, reason, values_requested, values_recovered, key_ids, message_ids, target)
    VALUES (record_audit.action, record_audit.source, record_audit.os_user, session_user, record_audit.reason,
            record_audit.values_requested, record_audit.values_recovered, record_audit.key_ids,
            record_audit.message_ids, record_audit.target)
    RETURNING id
$$;
-- Functions are executable by PUBLIC unless revoked; deploy/postgres-roles.sql grants it to key holders.
REVOKE ALL ON FUNCTION login_etl.record_audit(text, text, text, text, integer, integer, text[], text[], text) FROM PUBLIC;
REVOKE ALL ON login_etl.unmask_audit FROM PUBLIC;

-- Append-only, for everyone: privileges already stop other users, but not superusers, and an
-- exemption for the owner would exempt every superuser too (they pass any role test). Pruning
-- old rows is a deliberate act of the owner: ALTER TABLE ... DISABLE TRIGGER, in a transaction.
CREATE OR REPLACE FUNCTION login_etl.unmask_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RAISE EXCEPTION 'login_etl.unmask_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Its owner may prune it after ALTER TABLE login_etl.unmask_audit DISABLE TRIGGER unmask_audit_append_only.';
END
$$;
DROP TRIGGER IF EXISTS unmask_audit_append_only ON login_etl.unmask_audit;
CREATE TRIGGER unmask_audit_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON login_etl.unmask_audit
    FOR EACH STATEMENT EXECUTE FUNCTION login_etl.unmask_audit_append_only();
-- ALWAYS: it fires under session_replication_role = replica too, which a superuser could
-- otherwise set to write past it without a trace in the table's definition.
ALTER TABLE login_etl.unmask_audit ENABLE ALWAYS TRIGGER unmask_audit_append_only;
